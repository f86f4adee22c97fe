import type { Transporter } from 'nodemailer';
import type SMTPTransport from 'nodemailer/lib/smtp-transport/index.js';
import type { MailConfig } from './config.js';

/** What the outbox needs of a mail transport: one message out, accepted or refused by the server. */
export interface MailTransport {
  send(message: {
    messageId: string;
    from: string;
    to: string;
    subject: string;
    text: string;
    html: string;
  }): Promise<void>;
  close(): void;
}

const TIMEOUT_MS = 20_000;

/**
 * nodemailer's SMTP options for a mail configuration. `starttls` requires the upgrade (a server that does not
 * offer it is refused, never used in clear); `tls` speaks TLS from the first byte; `none` is only accepted to
 * a loopback relay (checked by the configuration) and never upgrades. Certificates are always checked.
 */
export function smtpOptions(config: MailConfig): SMTPTransport.Options {
  return {
    host: config.host,
    port: config.port,
    secure: config.tls === 'tls',
    requireTLS: config.tls === 'starttls',
    ignoreTLS: config.tls === 'none',
    ...(config.username ? { auth: { user: config.username, pass: config.password ?? '' } } : {}),
    tls: { rejectUnauthorized: true, ...(config.ca ? { ca: config.ca } : {}), minVersion: 'TLSv1.2' },
    connectionTimeout: TIMEOUT_MS,
    greetingTimeout: TIMEOUT_MS,
    socketTimeout: TIMEOUT_MS,
  };
}

// nodemailer is loaded with the first mail (or `doctor`'s check): a server without mail never holds it.
const load = async () => (await import('nodemailer')).default;

export function createSmtpTransport(config: MailConfig): MailTransport {
  // One connection per mail (no pool): the outbox sends a few mails now and then, and a pooled connection
  // a server dropped while idle would cost a failed attempt.
  let transporter: Transporter<SMTPTransport.SentMessageInfo> | undefined;
  return {
    async send(message) {
      transporter ??= (await load()).createTransport(smtpOptions(config));
      await transporter.sendMail({
        from: message.from,
        to: message.to,
        subject: message.subject,
        text: message.text,
        html: message.html,
        // The same Message-ID on every attempt: a receiver that sees a retry of a mail it already has can
        // drop it.
        messageId: message.messageId,
      });
    },
    close: () => transporter?.close(),
  };
}

/** `doctor`: connects, says hello, upgrades to TLS and logs in as configured; throws when any step fails. */
export async function verifySmtp(config: MailConfig, timeoutMs: number): Promise<void> {
  const transporter = (await load()).createTransport({
    ...smtpOptions(config),
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs,
  });
  try {
    await transporter.verify();
  } finally {
    transporter.close();
  }
}

/** A permanent refusal (SMTP 5xx, e.g. an unknown recipient) is not retried; anything else is. */
export function isPermanentFailure(err: unknown): boolean {
  const code = (err as { responseCode?: unknown } | null)?.responseCode;
  return typeof code === 'number' && code >= 500 && code < 600;
}
