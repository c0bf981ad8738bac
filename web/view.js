// DOM helpers. User text only ever becomes text nodes: nothing here parses HTML.

/** el('div', {class: 'x', onclick: f}, 'text', child) */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'class') node.className = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
}

const NAME_CHAR = /[A-Za-z0-9_-]/;

/**
 * The text of a message as nodes, each `@name` of `mentions` in a <mark> (the mention rule
 * of the protocol: not after a username character, not followed by one).
 */
export function messageText(text, mentions) {
  const frag = document.createDocumentFragment();
  const names = new Set((mentions || []).map((m) => m.toLowerCase()));
  if (names.size === 0) {
    frag.append(document.createTextNode(text));
    return frag;
  }
  let from = 0;
  const re = /@([A-Za-z0-9_-]{3,32})/g;
  let m;
  while ((m = re.exec(text)) !== null) {
    const before = m.index > 0 ? text[m.index - 1] : '';
    if (before && NAME_CHAR.test(before)) continue;
    if (!names.has(m[1].toLowerCase())) continue;
    frag.append(document.createTextNode(text.slice(from, m.index)));
    frag.append(el('mark', { class: 'mention' }, m[0]));
    from = m.index + m[0].length;
  }
  frag.append(document.createTextNode(text.slice(from)));
  return frag;
}

export function clock(ts) {
  const d = new Date(ts);
  const now = new Date();
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return d.toDateString() === now.toDateString() ? time : `${d.toLocaleDateString()} ${time}`;
}
