/**
 * A strict enough well-formedness check of the SVG the bench writes, without an XML
 * dependency: every tag is matched and nested, attributes are quoted, text holds no raw
 * `<`, `>` or stray `&`, and the root is an <svg> in the SVG namespace with a viewBox.
 */

/** Problems found in `svg` (empty when it is well-formed). Also returns the text content. */
export function checkSvg(svg: string): { problems: string[]; texts: string[]; tags: string[] } {
  const problems: string[] = [];
  const texts: string[] = [];
  const tags: string[] = [];
  const stack: string[] = [];
  const tag = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<>]*")*)\s*(\/?)>/y;
  let i = 0;
  let root: string | undefined;
  while (i < svg.length) {
    const lt = svg.indexOf('<', i);
    const text = svg.slice(i, lt === -1 ? svg.length : lt);
    if (text.includes('>')) problems.push(`raw '>' in text ${JSON.stringify(text.slice(0, 40))}`);
    if (/&(?!(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/.test(text)) problems.push(`stray '&' in text ${JSON.stringify(text.slice(0, 40))}`);
    if (text.trim() !== '') {
      if (stack.length === 0) problems.push(`text outside the root: ${JSON.stringify(text.slice(0, 40))}`);
      texts.push(text.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&'));
    }
    if (lt === -1) break;
    tag.lastIndex = lt;
    const m = tag.exec(svg);
    if (m === null) {
      problems.push(`malformed tag at ${lt}: ${JSON.stringify(svg.slice(lt, lt + 60))}`);
      break;
    }
    const [, closing, name, attrs, selfClosing] = m as unknown as [string, string, string, string, string];
    if (/&(?!(amp|lt|gt|quot|apos|#\d+);)/.test(attrs)) problems.push(`stray '&' in attributes of <${name}>`);
    const names = [...attrs.matchAll(/([\w:-]+)=/g)].map((a) => a[1]!);
    if (new Set(names).size !== names.length) problems.push(`duplicate attribute in <${name}>`);
    if (closing === '/') {
      const open = stack.pop();
      if (open !== name) problems.push(`</${name}> closes <${open ?? 'nothing'}>`);
    } else {
      if (root === undefined) {
        root = name;
        if (name !== 'svg') problems.push(`root is <${name}>, not <svg>`);
        if (!attrs.includes('xmlns="http://www.w3.org/2000/svg"')) problems.push('root has no SVG namespace');
        if (!/viewBox="[\d.]+ [\d.]+ [\d.]+ [\d.]+"/.test(attrs)) problems.push('root has no viewBox');
      } else if (stack.length === 0) problems.push(`a second root <${name}>`);
      tags.push(name);
      if (selfClosing !== '/') stack.push(name);
    }
    i = tag.lastIndex;
  }
  if (stack.length > 0) problems.push(`unclosed <${stack.join('>, <')}>`);
  if (root === undefined) problems.push('no element');
  if (/NaN|undefined|Infinity/.test(svg)) problems.push('NaN, undefined or Infinity in the output');
  return { problems, texts, tags };
}
