// Local SMTP peers for the real-Haraka test (haraka-real.test.js), all on 127.0.0.1 ports the
// kernel picks: an SMTP server that offers STARTTLS with the TLS versions it is given (TLS 1.0
// only, or TLS 1.2+), an on-path attacker (a TCP proxy that can strip STARTTLS from the EHLO
// reply), a minimal SMTP client to submit messages, and self-signed certificates made at test time.
//
// Each peer records every connection (`sessions`: its commands, the TLS version it negotiated or
// the handshake error it saw) and every message it accepted (`messages`, with the TLS version it
// arrived over or 'cleartext'); the proxy records every command that crossed it in cleartext.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';

const LOOPBACK = '127.0.0.1';

/** A self-signed certificate for `name`, made by the openssl CLI in `dir`: `{ key, cert }` PEM. */
export function selfSignedCertificate(dir, name) {
  const keyFile = path.join(dir, `${name}.key`);
  const certFile = path.join(dir, `${name}.crt`);
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${name}`,
    '-addext', `subjectAltName=DNS:${name}`, '-keyout', keyFile, '-out', certFile,
  ], { stdio: 'pipe' });
  return { key: readFileSync(keyFile), cert: readFileSync(certFile) };
}

/** Calls `onLine` for each CRLF- (or LF-) terminated line read from `socket`. */
function readLines(socket, onLine) {
  let buffered = '';
  const onData = (chunk) => {
    buffered += chunk.toString('latin1');
    let end;
    while ((end = buffered.indexOf('\n')) !== -1) {
      const line = buffered.slice(0, end).replace(/\r$/, '');
      buffered = buffered.slice(end + 1);
      onLine(line);
    }
  };
  socket.on('data', onData);
  return () => socket.off('data', onData);
}

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, LOOPBACK, () => resolve(server.address().port));
  });
}

/** Closes a server and every connection still open on it. */
function closer(server, sockets) {
  return () => new Promise((resolve) => {
    for (const socket of sockets) socket.destroy();
    server.close(() => resolve());
  });
}

/**
 * An SMTP peer that offers STARTTLS and speaks only the TLS versions of `tlsOptions`
 * (`minVersion`, `maxVersion`, `ciphers`), with the certificate `{ key, cert }`.
 * Returns `{ port, sessions, messages, close() }`.
 */
export async function startSmtpPeer({ name, key, cert, tlsOptions }) {
  const secureContext = tls.createSecureContext({ key, cert, ...tlsOptions });
  const sessions = [];
  const messages = [];
  const sockets = new Set();

  const server = net.createServer((raw) => {
    sockets.add(raw);
    raw.on('close', () => sockets.delete(raw));
    raw.on('error', () => {}); // a client that drops the connection is not the peer's failure
    const session = { commands: [], version: null, handshakeError: null };
    sessions.push(session);
    let socket = raw;
    let inData = null;
    const reply = (text) => socket.write(`${text}\r\n`);

    const onLine = (line) => {
      if (inData) {
        if (line === '.') {
          messages.push({ version: session.version ?? 'cleartext', data: inData.join('\r\n') });
          inData = null;
          reply('250 2.0.0 accepted');
        } else {
          inData.push(line.startsWith('..') ? line.slice(1) : line);
        }
        return;
      }
      session.commands.push(line);
      const verb = line.split(' ')[0].toUpperCase();
      switch (verb) {
        case 'EHLO': {
          const keywords = [name, ...(session.version ? [] : ['STARTTLS']), '8BITMIME'];
          socket.write(keywords.map((k, i) => `250${i === keywords.length - 1 ? ' ' : '-'}${k}\r\n`).join(''));
          break;
        }
        case 'STARTTLS': {
          if (session.version) return reply('503 5.5.1 TLS already active');
          stopReading();
          reply('220 2.0.0 ready to start TLS');
          const secure = new tls.TLSSocket(raw, { isServer: true, secureContext });
          secure.on('error', (err) => {
            if (!session.version) session.handshakeError = err.code ?? err.message;
            secure.destroy();
          });
          secure.once('secure', () => {
            session.version = secure.getProtocol();
            socket = secure;
            stopReading = readLines(secure, onLine);
          });
          break;
        }
        case 'MAIL': case 'RCPT': return reply('250 2.0.0 ok');
        case 'DATA':
          inData = [];
          return reply('354 end with <CRLF>.<CRLF>');
        case 'QUIT':
          reply('221 2.0.0 bye');
          return socket.end();
        default: return reply('502 5.5.2 not implemented');
      }
    };
    let stopReading = readLines(raw, onLine);
    reply(`220 ${name} ESMTP`);
  });

  const port = await listen(server);
  return { port, sessions, messages, close: closer(server, sockets) };
}

/**
 * An on-path attacker in front of the SMTP server at `upstreamPort`: a TCP proxy that relays
 * faithfully until `strip` is set, then removes STARTTLS from every EHLO reply it relays.
 * `cleartext` holds every client command it saw before any TLS (all of them, once it strips).
 * Returns `{ port, strip, cleartext, close() }`.
 */
export async function startStrippingProxy({ upstreamPort }) {
  const sockets = new Set();
  const proxy = { port: 0, strip: false, cleartext: [], close: null };

  const server = net.createServer((client) => {
    const upstream = net.connect(upstreamPort, LOOPBACK);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => {
        sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
      socket.on('error', () => {});
    }
    // After STARTTLS and its 220 both directions carry TLS records: relay them as they are.
    let clientSentStarttls = false;
    let tunnel = false;

    const stopClient = readLines(client, (line) => {
      proxy.cleartext.push(line);
      upstream.write(`${line}\r\n`);
      if (/^STARTTLS\b/i.test(line)) {
        clientSentStarttls = true;
        stopClient();
        client.on('data', (chunk) => upstream.write(chunk));
      }
    });

    let reply = [];
    const stopUpstream = readLines(upstream, (line) => {
      if (tunnel) return;
      reply.push(line);
      if (line[3] === '-') return; // a multi-line reply goes on
      let lines = reply;
      reply = [];
      if (proxy.strip) {
        lines = lines.filter((l) => !/^250[- ]STARTTLS$/i.test(l));
        lines = lines.map((l, i) => `${l.slice(0, 3)}${i === lines.length - 1 ? ' ' : '-'}${l.slice(4)}`);
      }
      client.write(lines.map((l) => `${l}\r\n`).join(''));
      if (clientSentStarttls) {
        tunnel = true;
        stopUpstream();
        upstream.on('data', (chunk) => client.write(chunk));
      }
    });
  });

  proxy.port = await listen(server);
  proxy.close = closer(server, sockets);
  return proxy;
}

/**
 * Submits one message over SMTP to 127.0.0.1:`port` (no TLS, no AUTH) and resolves with the
 * server's reply to the final dot; rejects on any other unexpected reply or after `timeoutMs`.
 */
export function submitMessage({ port, from, to, subject, body, timeoutMs = 10000 }) {
  const dialogue = [
    [null, '220'],
    ['EHLO submitter.test', '250'],
    [`MAIL FROM:<${from}>`, '250'],
    [`RCPT TO:<${to}>`, '250'],
    ['DATA', '354'],
    [`Subject: ${subject}\r\nFrom: <${from || 'postmaster@submitter.test'}>\r\nTo: <${to}>\r\n\r\n${body}\r\n.`, '250'],
  ];
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, LOOPBACK);
    let step = 0;
    const finish = (err, reply) => {
      clearTimeout(timer);
      stopReading();
      if (err) {
        socket.destroy();
        return reject(err);
      }
      socket.end('QUIT\r\n');
      return resolve(reply);
    };
    const timer = setTimeout(() => finish(new Error(`submission timed out after ${timeoutMs} ms`)), timeoutMs);
    socket.on('error', finish);
    const stopReading = readLines(socket, (line) => {
      if (line[3] === '-') return;
      const [command, expected] = dialogue[step];
      if (!line.startsWith(expected)) return finish(new Error(`after ${command ?? 'connect'}: ${line}`));
      step += 1;
      if (step === dialogue.length) return finish(null, line);
      return socket.write(`${dialogue[step][0]}\r\n`);
    });
  });
}
