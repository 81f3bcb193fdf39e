//! The Postfix process behind a socketmap connection.
//!
//! An outcome in the log belongs to the delivery of one SMTP client process (`postfix/smtp[PID]`),
//! and that process looked its TLS policy up over its own connection to the daemon: knowing the
//! PID behind each connection ties every outcome to the answer its delivery got, however many
//! deliveries to one destination are in flight. On a Unix socket the kernel says who connected
//! (`SO_PEERCRED`, any user); on TCP the connection's socket is found in `/proc/net/tcp` and its
//! owner among the processes' descriptors, which needs the right to read other users' `/proc/PID/fd`
//! (root). Where neither works the PID is unknown and the daemon attributes outcomes only where
//! that is unambiguous (see [`super::state::attribute`]).

use std::net::SocketAddr;
use std::os::unix::net::UnixStream;

use super::state::ClientPid;

/// The PID of the process on the other end of a Unix socket.
#[must_use]
pub fn unix_peer_pid(stream: &UnixStream) -> ClientPid {
    let credentials = rustix::net::sockopt::socket_peercred(stream).ok()?;
    u32::try_from(credentials.pid.as_raw_nonzero().get()).ok()
}

/// The PID of the local process owning the client end (`peer`) of a TCP connection accepted on
/// `local`.
#[must_use]
pub fn tcp_peer_pid(local: SocketAddr, peer: SocketAddr) -> ClientPid {
    if !peer.ip().is_loopback() {
        return None;
    }
    // The client's socket is the one whose local end is our peer and whose remote end is us.
    let table = match peer {
        SocketAddr::V4(_) => procfs::net::tcp().ok()?,
        SocketAddr::V6(_) => procfs::net::tcp6().ok()?,
    };
    let entry = table
        .into_iter()
        .find(|e| e.local_address == peer && e.remote_address == local)?;
    let inode = entry.inode;
    for process in procfs::process::all_processes().ok()?.flatten() {
        // A socket's owner is its creator's user: skip the other users' processes unread.
        if process.uid().ok() != Some(entry.uid) {
            continue;
        }
        let Ok(descriptors) = process.fd() else {
            continue;
        };
        let owns = descriptors
            .flatten()
            .any(|fd| matches!(fd.target, procfs::process::FDTarget::Socket(i) if i == inode));
        if owns {
            return u32::try_from(process.pid).ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_behind_a_loopback_connection_is_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        let found = tcp_peer_pid(server.local_addr().unwrap(), peer);
        // Only where this process may read /proc/PID/fd of its own (always) — it is the client.
        assert_eq!(found, Some(std::process::id()));
        drop(client);
    }

    #[test]
    fn the_process_behind_a_unix_socket_is_found() {
        let (a, _b) = UnixStream::pair().unwrap();
        assert_eq!(unix_peer_pid(&a), Some(std::process::id()));
    }
}
