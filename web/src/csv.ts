/**
 * One CSV cell, safe to open in a spreadsheet. A cell beginning with `=`, `+`, `-`, `@`, a tab or a carriage
 * return is a formula to Excel, LibreOffice and Google Sheets (a model or key name like `=2+5+cmd|' /C
 * calc'!A0` ran on the admin's machine): OWASP's advice is to prefix it with `'`, which shows the text as
 * typed. Then a cell holding a comma, a quote or a line break is quoted, its quotes doubled (RFC 4180).
 * https://owasp.org/www-community/attacks/CSV_Injection
 */
export function csvCell(value: string | number): string {
  if (typeof value === 'number') return String(value);
  const text = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** One CSV line of cells. */
export const csvLine = (cells: (string | number)[]) => cells.map(csvCell).join(',');
