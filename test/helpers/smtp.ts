// A real SMTP server in-process (the `smtp-server` package, speaking SMTP over TCP): STARTTLS with a
// certificate made for the test, AUTH PLAIN/LOGIN only after the upgrade (smtp-server refuses it in clear),
// and every accepted message parsed with `mailparser`. It can be stopped and started again on the same port.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { type ParsedMail, simpleParser } from 'mailparser';
import { generate } from 'selfsigned';
import { SMTPServer } from 'smtp-server';

export const SMTP_USER = 'colloquy-mailer';
export const SMTP_PASS = 'smtp-password-for-tests';

export interface ReceivedMail {
  parsed: ParsedMail;
  /** The recipient's address (the envelope's first RCPT TO). */
  to: string;
  /** Whether the session had upgraded to TLS (STARTTLS) when the message was sent. */
  secure: boolean;
  /** The user the session logged in as. */
  user: string | undefined;
  text: string;
  html: string;
  subject: string;
}

export interface Mailbox {
  port: number;
  /** A PEM file with the server's certificate, for SMTP_CA_FILE. */
  caFile: string;
  received: ReceivedMail[];
  /** The env an app needs to send here. */
  env(extra?: Record<string, string>): Record<string, string>;
  /** Waits (bounded) until `count` mails to `to` arrived; returns them. */
  waitFor(to: string, count?: number, timeoutMs?: number): Promise<ReceivedMail[]>;
  stop(): Promise<void>;
  /** Starts again on the same port. */
  start(): Promise<void>;
  close(): Promise<void>;
}

export async function startMailbox(): Promise<Mailbox> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'colloquy-smtp-'));
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
    keySize: 2048,
    extensions: [
      { name: 'basicConstraints', cA: true },
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
        ],
      },
    ],
  });
  const caFile = path.join(dir, 'smtp-ca.pem');
  writeFileSync(caFile, pems.cert);
  const received: ReceivedMail[] = [];
  let port = 0;
  let server: SMTPServer | undefined;

  const listen = async () => {
    const s = new SMTPServer({
      secure: false,
      key: pems.private,
      cert: pems.cert,
      authMethods: ['PLAIN', 'LOGIN'],
      closeTimeout: 1_000,
      logger: false,
      onAuth(auth, _session, callback) {
        if (auth.username === SMTP_USER && auth.password === SMTP_PASS)
          callback(null, { user: auth.username });
        else callback(new Error('Invalid username or password'));
      },
      onData(stream, session, callback) {
        simpleParser(stream).then(
          (parsed) => {
            received.push({
              parsed,
              to: session.envelope.rcptTo[0]?.address ?? '',
              secure: session.secure,
              user: typeof session.user === 'string' ? session.user : undefined,
              text: parsed.text ?? '',
              html: typeof parsed.html === 'string' ? parsed.html : '',
              subject: parsed.subject ?? '',
            });
            callback();
          },
          (err: Error) => callback(err),
        );
      },
    });
    s.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      s.server.once('error', reject);
      s.listen(port, '127.0.0.1', () => resolve());
    });
    port = (s.server.address() as AddressInfo).port;
    server = s;
  };
  const stop = async () => {
    const s = server;
    server = undefined;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  };
  await listen();

  return {
    get port() {
      return port;
    },
    caFile,
    received,
    env: (extra = {}) => ({
      SMTP_HOST: '127.0.0.1',
      SMTP_PORT: String(port),
      SMTP_TLS: 'starttls',
      SMTP_CA_FILE: caFile,
      SMTP_USERNAME: SMTP_USER,
      SMTP_PASSWORD: SMTP_PASS,
      SMTP_FROM: 'Colloquy <no-reply@colloquy.test>',
      PUBLIC_URL: 'https://chat.colloquy.test',
      MAIL_POLL_INTERVAL_MS: '100',
      MAIL_RETRY_INITIAL_MS: '200',
      ...extra,
    }),
    async waitFor(to, count = 1, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const mails = received.filter((m) => m.to === to);
        if (mails.length >= count) return mails;
        if (Date.now() > deadline)
          throw new Error(`timed out waiting for ${count} mail(s) to ${to} (got ${mails.length})`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    stop,
    start: listen,
    async close() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The first link in a mail's text part (the action link). */
export function linkIn(mail: ReceivedMail): URL {
  const match = /https?:\/\/\S+/.exec(mail.text);
  if (!match) throw new Error(`no link in the mail: ${mail.text}`);
  return new URL(match[0]);
}
