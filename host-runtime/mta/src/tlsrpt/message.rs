//! Whether a message is itself a TLS-RPT report (RFC 8460 section 5.3: `Content-Type:
//! multipart/report; report-type="tlsrpt"`, with a `TLS-Report-Domain` header). Such a
//! message goes out with `TLS-Required: No` semantics (a report about a broken TLS setup must
//! still reach it) and its own delivery is not reported: reporting it would feed the next
//! day's report with the failures of the last one, the loop several MTAs had.

/// Whether the header section of `message` says it is a TLS-RPT report.
#[must_use]
pub fn is_tlsrpt_report(message: &[u8]) -> bool {
    let mut unfolded: Vec<String> = Vec::new();
    for line in message.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(line).to_ascii_lowercase();
        match (line.first(), unfolded.last_mut()) {
            (Some(b' ' | b'\t'), Some(previous)) => previous.push_str(&text),
            _ => unfolded.push(text),
        }
    }
    unfolded.iter().any(|header| {
        if header.starts_with("tls-report-domain:") {
            return true;
        }
        let Some(value) = header.strip_prefix("content-type:") else {
            return false;
        };
        let value: String = value
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '"')
            .collect();
        value.starts_with("multipart/report;")
            && value
                .split(';')
                .any(|parameter| parameter == "report-type=tlsrpt")
    })
}

#[cfg(test)]
mod tests {
    use super::is_tlsrpt_report;

    #[test]
    fn a_report_as_tlsrpt_reportd_writes_it_is_recognized() {
        let report = b"Subject: Report Domain: example.net\r\nFrom: noreply@example.org\r\n\
            Content-Type: multipart/report;\r\n report-type=\"tlsrpt\";\r\n boundary=\"x\"\r\n\r\nbody";
        assert!(is_tlsrpt_report(report));
        assert!(is_tlsrpt_report(b"TLS-Report-Domain: example.net\n\nbody"));
    }

    #[test]
    fn ordinary_mail_is_not_a_report() {
        assert!(!is_tlsrpt_report(
            b"Subject: hi\nContent-Type: text/plain\n\nbody"
        ));
        assert!(!is_tlsrpt_report(
            b"Content-Type: multipart/report; report-type=delivery-status\n\nx"
        ));
        // In the body, it is not a header.
        assert!(!is_tlsrpt_report(
            b"Subject: hi\n\nTLS-Report-Domain: example.net\n"
        ));
    }
}
