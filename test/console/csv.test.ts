// The console's CSV exports open safely in a spreadsheet (issue 19: a model or key name beginning with `=`
// was a formula in the admin's export). OWASP CSV injection: https://owasp.org/www-community/attacks/CSV_Injection
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { csvCell, csvLine } from '../../web/src/csv.js';

describe('console CSV cells', () => {
  it("prefixes a cell a spreadsheet would run as a formula with '", () => {
    assert.equal(csvCell('=1+1'), "'=1+1");
    assert.equal(csvCell('+1'), "'+1");
    assert.equal(csvCell('-1+2'), "'-1+2");
    assert.equal(csvCell('@SUM(A1)'), "'@SUM(A1)");
    assert.equal(csvCell('\t=1'), "'\t=1");
    assert.equal(csvCell('\r=1'), `"'\r=1"`);
    // The payload: escaped, then quoted because of the quote it holds.
    assert.equal(csvCell("=2+5+cmd|' /C calc'!A0"), "'=2+5+cmd|' /C calc'!A0");
    assert.equal(csvCell('=HYPERLINK("http://x","y")'), `"'=HYPERLINK(""http://x"",""y"")"`);
  });

  it('leaves ordinary text and numbers as they are, and quotes commas, quotes and line breaks', () => {
    assert.equal(csvCell('gpt-4o-mini'), 'gpt-4o-mini');
    assert.equal(csvCell('a = b'), 'a = b');
    assert.equal(csvCell('ci key (ck_ab12…)'), 'ci key (ck_ab12…)');
    assert.equal(csvCell('a,b'), '"a,b"');
    assert.equal(csvCell('say "hi"'), '"say ""hi"""');
    assert.equal(csvCell('two\nlines'), '"two\nlines"');
    assert.equal(csvCell(-0.5), '-0.5', 'a number is a number, not a formula');
    assert.equal(csvLine(['=cmd', 3, 'x,y']), `'=cmd,3,"x,y"`);
  });
});
