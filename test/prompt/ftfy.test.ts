import { describe, expect, it } from 'vitest';
import { ftfyFixText } from '../../src/prompt/ftfy.js';
import { ftfyUnescapeHtml, pyHtmlUnescape } from '../../src/prompt/html-unescape.js';

// Expected values are ftfy's and Python's documented behaviour (docstrings of fix_text / html.unescape).
describe('ftfy subset', () => {
  it('repairs UTF-8 read as Latin-1 / Windows-1252', () => {
    expect(ftfyFixText('cafÃ© au lait')).toBe('café au lait');
    expect(ftfyFixText('itâ€™s')).toBe("it's");
  });

  it('repairs only what the badness heuristic flags (values from ftfy 6.3.1)', () => {
    expect(ftfyFixText('ß“quoted” é\u00a0“x')).toBe('ß"quoted" é\u00a0"x');
    expect(ftfyFixText(')Ã ǈ')).toBe(')Ã Lj');
    expect(ftfyFixText('cafĆ©Ć  la señor')).toBe('caféà  la señor');
    expect(ftfyFixText('ÐšÐ¾ÑˆÐºÐ°')).toBe('Кошка');
  });

  it('unescapes entities until stable, unless the text has a literal "<"', () => {
    expect(ftfyFixText('&amp;amp;')).toBe('&');
    expect(ftfyFixText('HTML entities &lt;3')).toBe('HTML entities <3');
    expect(ftfyFixText('<em>HTML entities &lt;3</em>')).toBe('<em>HTML entities &lt;3</em>');
    // Once a line had '<', later lines keep their entities too.
    expect(ftfyFixText('a < b\n&amp;')).toBe('a < b\n&amp;');
  });

  it('fixes ligatures, full width, curly quotes, line breaks, controls and NFC', () => {
    expect(ftfyFixText('ﬂubberiﬁc')).toBe('flubberific');
    expect(ftfyFixText('ＬＯＵＤ　ＮＯＩＳＥＳ')).toBe('LOUD NOISES');
    expect(ftfyFixText('“quoted” ‘x’')).toBe('"quoted" \'x\'');
    expect(ftfyFixText('a\r\nb\rc\u2028d')).toBe('a\nb\nc\nd');
    expect(ftfyFixText('\ufeffa\u0000b\x0bc')).toBe('abc');
    expect(ftfyFixText('e\u0301')).toBe('é');
    expect(ftfyFixText('\x1b[36;44mblue\x1b[0m')).toBe('blue');
    expect(ftfyFixText('x\ud800y')).toBe('x\ufffdy');
  });

  it('leaves legitimate accented text alone', () => {
    for (const s of ['naïveté', 'Ærø', 'straße', 'Ünïcödé', 'São Paulo', 'Łódź'])
      expect(ftfyFixText(s)).toBe(s);
  });
});

describe('HTML references', () => {
  it("decodes like Python's html.unescape, including legacy names without ';'", () => {
    expect(pyHtmlUnescape('&amp; &lt; &eacute; &#39; &#x41; &ampx &notin; &notit;')).toBe(
      "& < é ' A &x ∉ ¬it;",
    );
    expect(pyHtmlUnescape('&#0; &#x80; &#xD800; &#1114112;')).toBe('\ufffd € \ufffd \ufffd');
    expect(pyHtmlUnescape('&unknown; entity')).toBe('&unknown; entity');
  });

  it("decodes only complete references in ftfy's unescape_html, and all-caps names", () => {
    expect(ftfyUnescapeHtml('&amp &amp;')).toBe('&amp &');
    expect(ftfyUnescapeHtml('P&EACUTE;REZ')).toBe('PÉREZ');
    expect(ftfyUnescapeHtml('&#x2019;')).toBe('\u2019');
  });
});
