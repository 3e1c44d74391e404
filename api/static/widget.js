/*
 * Citewise help widget. One file, no dependencies, no build step (ES2019).
 *   <script src="https://api.example.com/widget.js" data-widget-id="demo" async></script>
 * or, once the script is loaded:
 *   <citewise-chat widget-id="demo" api="https://api.example.com"></citewise-chat>
 *
 * Answers, sources and server messages are untrusted: they reach the page only
 * via textContent, inert attributes, or hrefs that passed safeUrl(). Never innerHTML.
 */
(() => {
  'use strict';

  // currentScript is only set while this file first runs: read it now, before any await.
  const SCRIPT = document.currentScript;
  const TAG = 'citewise-chat';
  let scriptOrigin = '';
  try { scriptOrigin = new URL(SCRIPT.src).origin; } catch (e) { /* inline or module script */ }

  // Every visible string in one place, for a later translation pass.
  const T = {
    title: 'Help',
    greeting: "Hi! Ask me anything. I'll answer from the help centre and show my sources.",
    open: 'Open help chat',
    close: 'Close help chat',
    newConv: 'New conversation',
    ask: 'Ask a question…',
    send: 'Send question',
    stop: 'Stop',
    stopped: 'Stopped',
    refused: "I couldn't find this in the help centre.",
    error: 'Something went wrong, try again.',
    offline: 'You appear to be offline.',
    forbidden: "This help widget isn't enabled for this site.",
    config: "This help widget isn't set up (missing widget-id).",
    rate: (s) => 'Too many questions — try again in ' + (s ? s + (s === 1 ? ' second.' : ' seconds.') : 'a moment.'),
    source: 'Source',
    open1: 'Open source',
    newTab: ' (opens in a new tab)',
    closeSrc: 'Close source',
    weak: 'This passage may not fully support the answer.',
    helpful: 'Was this helpful?',
    up: 'Helpful',
    down: 'Not helpful',
    comment: 'What was missing? (optional)',
    thanks: 'Thanks for the feedback',
    fbFail: "Couldn't send feedback, try again.",
    fine: 'Answers come from the help centre and may contain mistakes.'
  };

  // Stroke icons on a 24px grid, drawn for this widget.
  const ICONS = {
    chat: 'M5 5h14a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2h-7l-5 4v-4H5a2 2 0 0 1-2-2V7a2 2 0 0 1 2-2z',
    close: 'M6 6l12 12M18 6L6 18',
    send: 'M12 19V5M6 11l6-6 6 6',
    stop: 'M7 7h10v10H7z',
    edit: 'M4 20h4L19 9l-4-4L4 16v4zM13 7l4 4',
    info: 'M12 8h.01M11 12h1v5h1M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18z',
    thumb: 'M7 11v9H4v-9h3zm0 0l3.5-7a2 2 0 0 1 3.5 1.5L13 10h5.5a2 2 0 0 1 2 2.4l-1.4 6a2 2 0 0 1-2 1.6H7'
  };

  // Dark palette, shared by theme=dark and by theme=auto under a dark OS setting.
  const DARK = '--bg:#17191e;--fg:#e7e9ee;--muted:#a1a8b5;--surface:#23262d;--line:#33373f;--err:#fda29b;--err-bg:#2b1716;--shadow:0 20px 48px #0008';

  // :host uses !important because page rules that match <citewise-chat> itself
  // otherwise beat :host; nothing else on the page can reach into the shadow root.
  const STYLE = `
:host{all:initial!important;display:block!important}
*{box-sizing:border-box}
[hidden]{display:none!important}
.root{--cw-accent:#2563eb;--cw-on-accent:#fff;--bg:#fff;--fg:#1d2330;--muted:#5f6775;--surface:#f2f4f7;--line:#e2e6ec;--err:#b42318;--err-bg:#fef3f2;
--shadow:0 20px 48px #1018281f,0 4px 12px #10182814;color:var(--fg);text-align:left;
font:14px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",Inter,Roboto,"Helvetica Neue",Arial,sans-serif}
:host([theme=dark]) .root{${DARK}}
@media (prefers-color-scheme:dark){:host([theme=auto]) .root{${DARK}}}
button,textarea{font:inherit;color:inherit;margin:0;border:0;padding:0;background:none}
button{cursor:pointer}
button:disabled{cursor:default;opacity:.5}
:focus-visible{outline:2px solid var(--cw-accent);outline-offset:2px}
svg{width:20px;height:20px;fill:none;stroke:currentColor;stroke-width:2;stroke-linecap:round;stroke-linejoin:round;flex:none}
.launcher,.panel{position:fixed;z-index:2147483000;right:20px}
:host([position=bottom-left]) .launcher,:host([position=bottom-left]) .panel{right:auto;left:20px}
.launcher{bottom:20px;width:56px;height:56px;border-radius:50%;display:grid;place-items:center;background:var(--cw-accent);
color:var(--cw-on-accent);box-shadow:0 8px 24px #1018283d;transition:transform .15s}
.launcher:hover{transform:scale(1.06)}
.launcher svg{width:26px;height:26px}
[aria-expanded=true] .i-chat,[aria-expanded=false] .i-close{display:none}
.panel{bottom:88px;width:384px;height:min(640px,calc(100vh - 112px));display:flex;flex-direction:column;background:var(--bg);
border:1px solid var(--line);border-radius:16px;box-shadow:var(--shadow);overflow:hidden;animation:cw-in .18s ease-out}
@keyframes cw-in{from{opacity:0;transform:translateY(8px) scale(.98)}}
@media (max-width:480px){.panel{top:0;left:0;right:0;bottom:0;width:auto;height:auto;border:0;border-radius:0}:host([open]) .launcher{display:none}}
@media (prefers-reduced-motion:reduce){*{animation:none!important;transition:none!important}}
.head{display:flex;align-items:center;gap:2px;padding:10px 8px 10px 18px;background:var(--cw-accent);color:var(--cw-on-accent)}
h2{flex:1;margin:0;font-size:16px;font-weight:600;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.icon{width:36px;height:36px;border-radius:10px;display:grid;place-items:center}
.icon:hover{background:#8883}
.head :focus-visible{outline-color:currentColor;outline-offset:-3px}
.log{flex:1;overflow-y:auto;overscroll-behavior:contain;padding:18px 16px;display:flex;flex-direction:column;gap:14px}
.msgs{display:contents}
.msg{max-width:90%;display:flex;flex-direction:column;gap:8px;align-items:flex-start}
.user{align-self:flex-end;align-items:flex-end}
.bubble{padding:10px 14px;border-radius:16px 16px 16px 4px;background:var(--surface);overflow-wrap:anywhere}
.user .bubble{border-radius:16px 16px 4px;background:var(--cw-accent);color:var(--cw-on-accent);white-space:pre-wrap}
.bubble p,.bubble ul,.bubble ol{margin:0 0 8px}
.bubble>:last-child{margin-bottom:0}
.bubble ul,.bubble ol{padding-left:20px}
a{color:inherit;text-decoration-color:var(--cw-accent);text-underline-offset:3px}
code{font:12.5px ui-monospace,Menlo,Consolas,monospace;background:#8882;border-radius:5px;padding:1px 5px}
.cite{display:inline-flex;align-items:center;justify-content:center;min-width:18px;height:18px;padding:0 5px;margin:0 1px;
border-radius:9px;background:var(--cw-accent);color:var(--cw-on-accent);font-size:11px;font-weight:600;line-height:1;vertical-align:2px}
.cite.weak{background:none;color:var(--muted);box-shadow:inset 0 0 0 1px var(--muted)}
.cite[aria-expanded=true]{background:var(--fg);color:var(--bg);box-shadow:none}
.note{display:flex;gap:10px;background:none;border:1px solid var(--line);color:var(--muted)}
.note p{margin:0}
.err{color:var(--err);background:var(--err-bg);border-color:currentColor}
.small{margin:0;font-size:12px;color:var(--muted)}
.dots{display:flex;gap:4px;padding:6px 0}
.dots i{width:7px;height:7px;border-radius:50%;background:var(--muted);animation:cw-dot 1.2s infinite}
.dots i:nth-child(2){animation-delay:.15s}
.dots i:nth-child(3){animation-delay:.3s}
@keyframes cw-dot{40%{opacity:1;transform:translateY(-3px)}0%,80%{opacity:.3}}
.card{width:100%;padding:10px 12px;border:1px solid var(--line);border-left:3px solid var(--cw-accent);border-radius:10px;font-size:13px}
.card>div{display:flex;align-items:flex-start;gap:8px}
.card strong{flex:1;padding-top:1px}
.card .icon{width:24px;height:24px;margin:-2px -4px 0 0}
.card svg,.thumb svg{width:16px;height:16px}
blockquote{margin:8px 0;padding-left:10px;border-left:2px solid var(--line)}
.card a{font-weight:600}
.sources ol{list-style:none;margin:2px 0 0;padding:0}
.src{text-align:left}
.src:hover{color:var(--fg);text-decoration:underline}
.fb{display:flex;align-items:center;gap:2px}
.fb span{margin-right:4px}
.thumb{width:30px;height:30px;border-radius:8px;display:grid;place-items:center}
.down svg{transform:rotate(180deg)}
.thumb:hover,.thumb[aria-pressed=true]{background:var(--surface);color:var(--fg)}
[aria-pressed=true] path{fill:currentColor;fill-opacity:.2}
.fbbox{display:flex;flex-direction:column;gap:6px}
.slot,.fbbox{width:100%}
.fbbox textarea{resize:vertical;min-height:60px;padding:8px 10px;border:1px solid var(--line);border-radius:10px}
.fbbox>button,.send{background:var(--cw-accent);color:var(--cw-on-accent)}
.fbbox>button{align-self:flex-end;padding:5px 14px;border-radius:8px;font-size:13px;font-weight:600}
.starters{display:flex;flex-wrap:wrap;gap:8px}
.starter{padding:7px 12px;border:1px solid var(--line);border-radius:99px;font-size:13px;text-align:left}
.starter:hover{border-color:var(--cw-accent)}
.foot{padding:10px 12px 8px;border-top:1px solid var(--line)}
form{display:flex;align-items:flex-end;gap:8px;padding:5px 5px 5px 12px;border:1px solid var(--line);border-radius:14px}
form:focus-within{border-color:var(--cw-accent);box-shadow:0 0 0 1px var(--cw-accent)}
form textarea,form textarea:focus-visible{flex:1;min-height:36px;max-height:132px;padding:7px 0;outline:0;resize:none}
.send{width:36px;height:36px;border-radius:10px;display:grid;place-items:center}
.stop path{fill:currentColor}
.fine{margin-top:6px;font-size:11px;text-align:center}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
`;

  /* ---------- helpers ---------- */

  // h(tag, {class, text, t, onX: fn, attr: value}, children). `t` is the stable
  // test hook: it becomes both data-testid and a ::part() name.
  const h = (tag, attrs, kids) => {
    const e = document.createElement(tag);
    for (const k in attrs) {
      const v = attrs[k];
      if (v == null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k === 't') { e.dataset.testid = v; e.setAttribute('part', v); }
      else if (typeof v === 'function') e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : v);
    }
    e.append(...[].concat(kids == null ? [] : kids).filter((x) => x != null && x !== false));
    return e;
  };

  const icon = (name, cls) => {
    const NS = 'http://www.w3.org/2000/svg';
    const s = document.createElementNS(NS, 'svg');
    const p = s.appendChild(document.createElementNS(NS, 'path'));
    s.setAttribute('viewBox', '0 0 24 24');
    s.setAttribute('aria-hidden', 'true');
    if (cls) s.setAttribute('class', cls);
    p.setAttribute('d', ICONS[name]);
    return s;
  };

  // Only http(s) may become an href; javascript:, data: and garbage become no link at all.
  const safeUrl = (u, base) => {
    try {
      const x = new URL(u, base);
      return u && /^https?:$/.test(x.protocol) ? x.href : null;
    } catch (e) { return null; }
  };

  const str = (v) => (typeof v === 'string' ? v : '');
  const clip = (s, n) => (s.length > n ? s.slice(0, n).replace(/\s+\S*$/, '') + '…' : s);
  const byN = (list, n) => (list || []).find((x) => x && +x.n === n) || {};
  const CITE = /\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]/g;

  // What the live region says: the answer without Markdown or citation markers.
  const plain = (s) => s.replace(/\s*\[[\d,\s]+\]/g, '').replace(/\[([^\]\n]*)\]\([^)\s]*\)/g, '$1').replace(/[*_`#]+/g, '').trim();

  /* ---------- minimal, safe Markdown ---------- */

  // One alternation scanned left to right: at any position an earlier branch
  // wins, so ** beats *, and a code span hides everything inside it.
  const INLINE = /`([^`\n]+)`|\*\*(\S(?:.*?\S)?)\*\*|\[([^\]\n]+)\]\([^)\s]+\)|\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]|([*_])(\S(?:.*?\S)?)\5/g;

  function inline(parent, s, ctx) {
    const re = new RegExp(INLINE); // own lastIndex, since this recurses
    let last = 0;
    let m;
    while ((m = re.exec(s))) {
      const i = m.index;
      const end = re.lastIndex;
      let node = null;
      if (m[1]) node = h('code', { text: m[1] });
      else if (m[2]) inline((node = h('strong')), m[2], ctx);
      else if (m[3]) inline((node = h('span')), m[3], ctx); // a Markdown link keeps its label, never an href
      else if (m[4]) {
        const ns = m[4].match(/\d+/g).map(Number);
        if (ns.every(ctx.has)) node = ns.map(ctx.cite);
        // snake_case is not emphasis. Checked by hand: a lookbehind would break older Safari.
      } else if (m[5] === '*' || !/\w/.test(s.charAt(i - 1) + s.charAt(end))) inline((node = h('em')), m[6], ctx);
      if (!node) { re.lastIndex = i + 1; continue; } // not markup after all: keep as text
      parent.append(s.slice(last, i), ...[].concat(node));
      last = end;
    }
    parent.append(s.slice(last));
  }

  // Paragraphs, line breaks, bullet/numbered lists, #..### headings as bold lines.
  function markdown(text, ctx) {
    const frag = document.createDocumentFragment();
    let para = null;
    let list = null;
    for (const line of text.split(/\r\n?|\n/)) {
      let m;
      if (!line.trim()) para = list = null;
      else if ((m = /^ {0,3}#{1,3}\s+(.*?)(?:\s+#+)?\s*$/.exec(line))) {
        para = list = null;
        inline(frag.appendChild(h('p')).appendChild(h('strong')), m[1], ctx);
      } else if ((m = /^\s*(?:[-*+]|(\d{1,4})[.)])\s+(.*)$/.exec(line))) {
        const tag = m[1] ? 'ol' : 'ul';
        if (!list || list.localName !== tag) list = frag.appendChild(h(tag, { start: m[1] > 1 ? m[1] : null }));
        inline(list.appendChild(h('li')), m[2], ctx);
        para = null;
      } else {
        list = null;
        if (para) para.append(h('br'));
        else para = frag.appendChild(h('p'));
        inline(para, line.trim(), ctx);
      }
    }
    return frag;
  }

  /* ---------- network ---------- */

  // fetch rejects with a TypeError for DNS, connection and CORS failures: to a
  // visitor those all mean "offline". An abort must stay an abort.
  const net = (url, opts) => fetch(url, opts).catch((e) => {
    throw e.name === 'AbortError' ? e : { kind: 'offline' };
  });

  async function apiError(res) {
    let e = {};
    try { e = (await res.json()).error || {}; } catch (x) { /* not JSON: the status still tells */ }
    return {
      status: res.status,
      code: str(e.code),
      message: str(e.message),
      // Cross-origin, this header is readable only if the API sends Access-Control-Expose-Headers: Retry-After.
      wait: parseInt(res.headers.get('Retry-After'), 10) || 0
    };
  }

  // Incremental text/event-stream parser: feed(chunk), then feed('', true) at the end.
  function sse(onEvent) {
    let buf = '';
    let data = [];
    let type = '';
    const line = (l) => {
      if (!l) {
        if (data.length) onEvent(type || 'message', data.join('\n'));
        data = [];
        type = '';
      } else if (l[0] !== ':') { // ":..." is a comment, used for heartbeats
        const c = l.indexOf(':');
        const v = c < 0 ? '' : l.slice(c + 1).replace(/^ /, '');
        const field = c < 0 ? l : l.slice(0, c);
        if (field === 'data') data.push(v);
        else if (field === 'event') type = v;
      }
    };
    return (chunk, final) => {
      const re = /\r\n|\r|\n/g;
      let start = 0;
      let m;
      buf += chunk;
      while ((m = re.exec(buf))) {
        // A trailing \r may be half of a \r\n split across two chunks: wait for more.
        if (!final && re.lastIndex === buf.length && m[0] === '\r') break;
        line(buf.slice(start, m.index));
        start = re.lastIndex;
      }
      buf = buf.slice(start);
      if (final) { line(buf); line(''); } // a last event may lack its blank line
    };
  }

  async function readStream(res, onEvent) {
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    const feed = sse(onEvent);
    try {
      for (;;) {
        const r = await reader.read().catch((e) => {
          throw e.name === 'AbortError' ? e : { kind: navigator.onLine ? 'server' : 'offline' };
        });
        if (r.done) break;
        feed(dec.decode(r.value, { stream: true }));
      }
      feed(dec.decode(), true);
    } catch (e) {
      reader.cancel().catch(() => {});
      throw e;
    }
  }

  /* ---------- the element ---------- */

  let uid = 0;
  const BUSY = { thinking: 1, streaming: 1 };

  // This browser's visitor id: 128 random bits kept in localStorage (in memory when storage
  // is blocked), sent with each token exchange. The server binds it into the page token, and
  // conversations belong to one visitor, not to everyone on the widget.
  const VISITOR_KEY = 'citewise-visitor';
  const VISITOR_RE = /^[0-9a-f]{32}$/;
  let visitor = null;
  const visitorId = (given) => {
    if (given !== undefined) {
      if (typeof given === 'string' && VISITOR_RE.test(given) && given !== visitor) {
        visitor = given;
        try { localStorage.setItem(VISITOR_KEY, given); } catch (e) { /* storage blocked */ }
      }
      return visitor;
    }
    if (visitor) return visitor;
    try { const kept = localStorage.getItem(VISITOR_KEY); if (VISITOR_RE.test(kept || '')) visitor = kept; } catch (e) { /* blocked */ }
    if (!visitor && window.crypto && crypto.getRandomValues) {
      const made = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
      visitorId(made);
    }
    return visitor || undefined; // undefined: none sent, the server makes one
  };

  class CitewiseChat extends HTMLElement {
    static get observedAttributes() {
      return ['widget-id', 'api', 'title', 'greeting', 'starters', 'color', 'open'];
    } // kb is read per question; theme and position are :host() selectors in CSS

    constructor() {
      super();
      this._msgs = [];
      this._conv = null;
      this._tok = null; // { value, refreshAt }
      this._tokP = null; // in-flight token request, shared by concurrent callers
      this._ctl = null; // AbortController of the running question
      this._build();
    }

    connectedCallback() {
      if (this._ready) return; // moved within the page: keep everything
      this._restore();
      CitewiseChat.observedAttributes.forEach((n) => this._sync(n));
      this._ready = true;
    }

    disconnectedCallback() { this._abort(); }

    // Before connection, connectedCallback applies all attributes in one go.
    attributeChangedCallback(name) { if (this._ready) this._sync(name); }

    /** "New conversation": clears the transcript and forgets the conversation id. */
    reset() {
      this._abort();
      this._msgs = [];
      this._list.textContent = '';
      this._setConv(null);
      this._starters.hidden = !this._starters.firstChild;
      try { sessionStorage.removeItem(this._key()); } catch (e) { /* storage blocked */ }
      this._announce(T.newConv);
      this._input.focus();
    }

    _api() { return (this.getAttribute('api') || scriptOrigin || location.origin).replace(/\/+$/, ''); }

    _key() { return 'citewise:' + this.getAttribute('widget-id'); }

    _build() {
      const button = (t, label, onclick, kids, cls) =>
        h('button', { class: cls || 'icon', type: 'button', t, 'aria-label': label, title: label, onclick }, kids);
      this._launcher = h('button', {
        class: 'launcher', type: 'button', t: 'launcher', 'aria-controls': 'panel', 'aria-expanded': 'false',
        onclick: () => this._setOpen(!this.hasAttribute('open'), true)
      }, [icon('chat', 'i-chat'), icon('close', 'i-close')]);
      this._title = h('h2');
      this._greet = h('div', { class: 'msg', t: 'greeting' }, h('div', { class: 'bubble' }));
      this._list = h('div', { class: 'msgs' });
      this._starters = h('div', { class: 'starters' });
      // Written only when an answer is final (_finish): screen readers hear it once, not every delta.
      this._live = h('div', { class: 'sr', 'aria-live': 'polite', t: 'live' });
      this._log = h('div', { class: 'log' }, [this._greet, this._list, this._starters, this._live]);
      this._input = h('textarea', {
        rows: 1, t: 'input', 'aria-label': T.ask, placeholder: T.ask,
        oninput: () => this._grow(),
        onkeydown: (e) => {
          // keyCode 229: IME composition, for browsers without isComposing
          if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
            e.preventDefault();
            this._submit();
          }
        }
      });
      this._send = h('button', { class: 'send', t: 'send', 'aria-label': T.send, title: T.send, disabled: true }, icon('send'));
      this._stop = button('stop', T.stop, () => this._abort(true), icon('stop'), 'send stop');
      this._stop.hidden = true;
      this._panel = h('div', { class: 'panel', id: 'panel', role: 'dialog', t: 'panel', hidden: true }, [
        h('div', { class: 'head' }, [
          this._title,
          button('new-conversation', T.newConv, () => this.reset(), icon('edit')),
          button(null, T.close, () => this._setOpen(false, true), icon('close'))
        ]),
        this._log,
        h('div', { class: 'foot' }, [
          h('form', { onsubmit: (e) => { e.preventDefault(); this._submit(); } }, [this._input, this._send, this._stop]),
          h('p', { class: 'small fine', text: T.fine })
        ])
      ]);
      // title="" keeps the host's own title attribute from showing as a tooltip over the whole widget.
      this._root = h('div', { class: 'root', title: '', onkeydown: (e) => e.key === 'Escape' && this._setOpen(false, true) }, [this._launcher, this._panel]);
      this.attachShadow({ mode: 'open' }).append(h('style', { text: STYLE }), this._root);
    }

    _sync(name) {
      const v = this.getAttribute(name);
      if (name === 'title') {
        this._title.textContent = v || T.title;
        this._panel.setAttribute('aria-label', v || T.title);
      } else if (name === 'greeting') {
        // Absent: a generic greeting. Present but empty: none.
        this._greet.firstChild.textContent = v == null ? T.greeting : v;
        this._greet.hidden = !this._greet.textContent.trim();
      } else if (name === 'starters') {
        let list = (v || '').trim();
        try { list = list[0] === '[' ? JSON.parse(list) : list.split('|'); } catch (e) { list = []; }
        this._starters.textContent = '';
        (Array.isArray(list) ? list : []).map((q) => str(q).trim()).filter(Boolean).slice(0, 6).forEach((q) => {
          this._starters.append(h('button', {
            class: 'starter', type: 'button', t: 'starter', text: q, onclick: () => this._ctl || this._ask(q)
          }));
        });
        this._starters.hidden = !this._starters.firstChild || this._msgs.length > 0;
      } else if (name === 'color') this._color(v);
      else if (name === 'open') this._setOpen(v != null, this._ready);
      else this._tok = null; // widget-id or api changed: the old token is for someone else
    }

    _color(v) {
      v = (v || '').trim();
      const st = this._root.style;
      // CSS.supports also says yes to var(), env() and keywords like inherit: not colours.
      const ok = v && window.CSS && CSS.supports('color', v) && !/\b(var|env|attr)\(|^(inherit|initial|unset|revert|revert-layer|currentcolor)$/i.test(v);
      st.removeProperty('--cw-on-accent');
      if (!ok) return st.removeProperty('--cw-accent');
      st.setProperty('--cw-accent', v);
      // Black or white text, whichever contrasts more, so a pale brand colour stays readable.
      const c = (getComputedStyle(this._launcher).backgroundColor.match(/[\d.]+/g) || []).slice(0, 3)
        .map((x) => (x /= 255) <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4));
      if (c.length === 3 && 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2] > 0.179) st.setProperty('--cw-on-accent', '#111827');
    }

    _setOpen(open, focus) {
      if (open !== this.hasAttribute('open')) this.toggleAttribute('open', open); // re-enters _sync: a no-op then
      this._panel.hidden = !open;
      this._launcher.setAttribute('aria-expanded', open);
      this._launcher.setAttribute('aria-label', open ? T.close : T.open);
      if (open) {
        this._log.scrollTop = 1e9;
        if (focus) this._input.focus(); // but no focus stealing when a page merely loads with `open`
      } else if (focus && this.shadowRoot.activeElement) this._launcher.focus();
    }

    _grow() {
      const i = this._input;
      i.style.height = 'auto';
      i.style.height = Math.min(i.scrollHeight, 132) + 'px';
      this._send.disabled = !i.value.trim();
    }

    _submit() {
      const q = this._input.value.trim();
      if (!q || this._ctl) return;
      this._input.value = '';
      this._grow();
      this._ask(q);
    }

    _busy(on) {
      const a = this.shadowRoot.activeElement;
      this._send.hidden = on;
      this._stop.hidden = !on;
      // Keep keyboard focus on the control that replaced the one under it.
      if (a === (on ? this._send : this._stop)) (on ? this._stop : this._input).focus();
    }

    _abort(byUser) {
      const c = this._ctl;
      if (!c) return;
      c.byUser = byUser;
      this._ctl = null;
      this._busy(false);
      c.abort();
    }

    _setConv(id) {
      this._conv = id;
      if (id) this.setAttribute('data-conversation-id', id);
      else this.removeAttribute('data-conversation-id');
    }

    /* ----- token and requests ----- */

    _token() {
      const t = this._tok;
      if (t && Date.now() < t.refreshAt) return t.value;
      return this._tokP || (this._tokP = (async () => {
        try {
          const res = await net(this._api() + '/v1/widget/token', {
            method: 'POST', credentials: 'omit', headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify({ widget_id: this.getAttribute('widget-id'), visitor: visitorId() })
          });
          if (!res.ok) throw await apiError(res);
          const d = await res.json();
          visitorId(d.visitor); // the server's, when this browser could not make one
          const life = (+d.expires_in || 300) * 1000;
          // Refresh 60 s before expiry (or halfway through, for very short lives).
          this._tok = { value: str(d.token), refreshAt: Date.now() + life - Math.min(60000, life / 2) };
          return d.token;
        } finally { this._tokP = null; }
      })());
    }

    async _post(path, body, signal, retried) {
      const token = await this._token();
      const res = await net(this._api() + path, {
        method: 'POST', credentials: 'omit', signal, body: JSON.stringify(body),
        headers: { 'Content-Type': 'application/json', 'X-Widget-Token': token }
      });
      if (res.ok) return res;
      const e = await apiError(res);
      if (res.status === 401 && !retried && e.code.startsWith('widget_token')) {
        this._tok = null; // expired or revoked: one fresh token, one retry
        return this._post(path, body, signal, true);
      }
      throw e;
    }

    /* ----- asking ----- */

    async _ask(q) {
      this._starters.hidden = true;
      this._add({ role: 'user', text: q, state: 'done' });
      const m = this._add({ role: 'assistant', text: '', state: 'thinking', q });
      this._log.scrollTop = 1e9;
      const ctl = (this._ctl = new AbortController());
      this._busy(true);
      try {
        if (!this.getAttribute('widget-id')) throw { kind: 'config' };
        if (navigator.onLine === false) throw { kind: 'offline' };
        const kb = this.getAttribute('kb');
        const res = await this._post('/v1/ask/stream', {
          question: q, conversation_id: this._conv || undefined, kb: kb || undefined
        }, ctl.signal);
        await readStream(res, (type, data) => this._onEvent(m, type, data));
        if (BUSY[m.state]) throw { kind: 'server' }; // the stream ended without `done`
      } catch (e) {
        if (ctl.signal.aborted) return ctl.byUser && this._finish(m, 'stopped', T.stopped);
        if (!BUSY[m.state]) return;
        const s = e.status;
        m.text = '';
        // Hand the question back so "try again" is one Enter away.
        if (!this._input.value) { this._input.value = q; this._grow(); }
        if (!e.kind && !s) console.error('[citewise]', e); // a bug in here, not the network
        this._finish(m, 'error', e.kind === 'config' ? T.config : e.kind === 'offline' ? T.offline
          : s === 403 ? T.forbidden : s === 429 ? T.rate(e.wait)
            : (s === 400 || s === 413 || s === 422) && e.message ? e.message : T.error);
      } finally {
        if (this._ctl === ctl) { this._ctl = null; this._busy(false); }
      }
    }

    _onEvent(m, type, data) {
      if (!BUSY[m.state]) return; // nothing counts after `done`
      let d;
      try { d = JSON.parse(data) || {}; } catch (e) { return; }
      if (type === 'sources') {
        // Only the card's excerpt needs the passage, and the transcript goes to sessionStorage.
        m.sources = [].concat(d.sources || []).map((s) => Object.assign({}, s, { text: clip(str(s && s.text), 400) }));
      } else if (type === 'citations') m.citations = [].concat(d.citations || []);
      else if (type === 'delta') {
        m.text += str(d.text);
        if (m.state === 'thinking') { m.state = 'streaming'; this._update(m); } else this._soon(m);
      } else if (type === 'done') {
        m.answerId = str(d.answer_id);
        if (d.conversation_id && typeof d.conversation_id === 'string') this._setConv(d.conversation_id);
        this._finish(m, d.refused ? 'refused' : 'done');
      } else if (type === 'error') throw { kind: 'server' }; // unwinds readStream into _ask's catch
    }

    _finish(m, state, notice) {
      m.state = state;
      m.notice = notice;
      this._update(m);
      this._announce(notice || plain(m.text) || T.refused);
      this._save();
    }

    _announce(text) {
      // Emptying first makes an identical repeated message be announced again.
      this._live.textContent = '';
      setTimeout(() => { this._live.textContent = text; }, 60);
    }

    /* ----- rendering ----- */

    _add(m) {
      m.id = ++uid;
      this._msgs.push(m);
      this._list.append(this._paint(m));
      return m;
    }

    // Repaint one message; stay pinned to the bottom only if the reader already
    // was there (never yank someone who scrolled up to read).
    _update(m) {
      const l = this._log;
      const stick = l.scrollHeight - l.scrollTop - l.clientHeight < 60;
      this._paint(m);
      if (stick) l.scrollTop = 1e9;
    }

    // Deltas can arrive many per frame; repaint at most once per frame.
    _soon(m) {
      m.raf = m.raf || requestAnimationFrame(() => {
        m.raf = 0;
        if (m.state === 'streaming') this._update(m);
      });
    }

    _paint(m) {
      const el = m.el || (m.el = h('div', { class: 'msg ' + m.role, t: 'message', 'data-role': m.role }));
      const busy = BUSY[m.state];
      const note = (cls, kids) => h('div', { class: 'bubble note ' + cls }, [icon('info'), h('div', null, kids)]);
      el.dataset.state = m.state;
      el.textContent = '';
      if (m.role === 'user') {
        el.append(h('div', { class: 'bubble', text: m.text }));
        return el;
      }
      if (m.state === 'thinking') el.append(h('div', { class: 'bubble', 'aria-hidden': 'true' }, h('div', { class: 'dots' }, [h('i'), h('i'), h('i')])));
      else if (m.state === 'refused') el.append(note('', h('p', { t: 'notice', text: plain(m.text) || T.refused })));
      else if (m.state === 'error') el.append(note('err', h('p', { t: 'notice', text: m.notice })));
      else if (m.text) {
        // Mid-stream the bubble is aria-hidden (the live region gets the final text), and a
        // half-received marker like "[1" is held back instead of flashing as text.
        el.append(h('div', { class: 'bubble', 'aria-hidden': busy && 'true' },
          markdown(busy ? m.text.replace(/\[[\d,\s]*$/, '') : m.text, this._ctx(m, !busy))));
      }
      if (busy || m.state === 'refused') return el;

      el.append(m.slot = h('div', { class: 'slot', hidden: true }));
      if (m.card) this._card(m, m.card, true);
      if (m.state === 'stopped') el.append(h('p', { class: 'small', t: 'notice', text: m.notice }));
      const cited = this._cited(m);
      if (cited.length && m.state === 'done') {
        el.append(h('div', { class: 'small sources' }, ['Sources:', h('ol', null, cited.map((n) => {
          const s = this._src(m, n);
          return h('li', null, h('button', {
            class: 'src', type: 'button', t: 'source', text: n + '. ' + s.title + (s.heading ? ' — ' + s.heading : ''),
            onclick: () => this._card(m, n)
          }));
        }))]));
      }
      if (m.state === 'done' && m.answerId) el.append(this._feedback(m));
      return el;
    }

    // Everything the card, marker and source list need about source n.
    _src(m, n) {
      const s = byN(m.sources, n);
      const c = byN(m.citations, n);
      return {
        title: str(c.title || s.title || s.source) || T.source + ' ' + n,
        heading: str(c.heading || s.heading),
        page: c.page != null ? c.page : s.page,
        quote: str(c.quote) || clip(str(s.text), 280),
        url: safeUrl(str(c.url || s.url), this._api() + '/'),
        weak: c.supported === false
      };
    }

    _has(m, n) { return !!(byN(m.sources, n).n || byN(m.citations, n).n); }

    _cited(m) {
      const seen = new Set((m.citations || []).map((c) => +c.n));
      for (const t of m.text.match(CITE) || []) t.match(/\d+/g).forEach((n) => seen.add(+n));
      return [...seen].filter((n) => this._has(m, n)).sort((a, b) => a - b);
    }

    _ctx(m, live) {
      return {
        has: (n) => this._has(m, n),
        cite: (n) => {
          const s = this._src(m, n);
          const cls = 'cite' + (s.weak ? ' weak' : '');
          // Mid-stream markers are inert spans: nothing focusable inside an aria-hidden bubble.
          return live ? h('button', {
            class: cls, type: 'button', t: 'cite', 'data-n': n, text: n, title: s.weak ? T.weak : null,
            'aria-label': T.source + ' ' + n + ': ' + s.title, 'aria-expanded': String(m.card === n), 'aria-controls': 'card' + m.id,
            onclick: () => this._card(m, n)
          }) : h('span', { class: cls, text: n });
        }
      };
    }

    // Toggle the citation card of source n under answer m (n = null closes it).
    _card(m, n, keep) {
      m.card = keep || m.card !== n ? n : null;
      const slot = m.slot;
      const s = this._src(m, m.card);
      slot.textContent = '';
      slot.hidden = !m.card;
      m.el.querySelectorAll('.cite[data-n]').forEach((b) => b.setAttribute('aria-expanded', +b.dataset.n === m.card));
      if (!m.card) return;
      slot.append(h('div', { class: 'card', t: 'citation-card', id: 'card' + m.id, role: 'group', 'aria-label': T.source + ' ' + m.card + ': ' + s.title }, [
        h('div', null, [
          h('span', { class: 'cite', 'aria-hidden': 'true', text: m.card }),
          h('strong', { text: s.title }),
          h('button', { class: 'icon', type: 'button', 'aria-label': T.closeSrc, onclick: () => this._card(m, null) }, icon('close'))
        ]),
        h('p', { class: 'small', text: [s.heading, s.page != null && 'p. ' + s.page].filter(Boolean).join(' · ') }),
        s.quote && h('blockquote', { text: s.quote }),
        s.weak && h('p', { class: 'small', text: T.weak }),
        s.url && h('a', { href: s.url, target: '_blank', rel: 'noopener noreferrer', t: 'citation-link' },
          [T.open1 + ' ↗', h('span', { class: 'sr', text: T.newTab })])
      ]));
      if (!keep) slot.scrollIntoView({ block: 'nearest' });
    }

    _feedback(m) {
      const thumb = (r, cls) => h('button', { class: 'thumb ' + cls, type: 'button', t: 'thumb-' + r, 'aria-label': T[r], title: T[r], 'aria-pressed': String(m.rated === r) }, icon('thumb'));
      const up = thumb('up', '');
      const down = thumb('down', 'down');
      const box = h('div', { class: 'fbbox', hidden: true });
      const lock = (on, btn) => { up.disabled = down.disabled = btn.disabled = on; };
      const say = (t, text, role) => {
        const old = box.querySelector('[role=alert]');
        if (old) old.remove();
        box.hidden = false;
        box.append(h('p', { class: 'small', t, text, role }));
      };
      const thanks = () => {
        lock(true, up);
        box.textContent = '';
        say('feedback-thanks', T.thanks, 'status');
      };
      const send = async (rating, comment, btn) => {
        lock(true, btn);
        try {
          await this._post('/v1/feedback', { answer_id: m.answerId, rating, comment: comment || undefined });
          m.rated = rating;
          this._save();
          thanks();
        } catch (e) {
          lock(false, btn);
          say('feedback-error', T.fbFail, 'alert');
        }
      };
      const press = (r) => {
        up.setAttribute('aria-pressed', r === 'up');
        down.setAttribute('aria-pressed', r === 'down');
      };
      up.onclick = () => { press('up'); box.hidden = true; send('up', '', up); };
      // A thumbs-down is recorded on Send, so the optional comment travels with it.
      down.onclick = () => {
        press('down');
        if (!box.hidden) return;
        const ta = h('textarea', { t: 'feedback-comment', 'aria-label': T.comment, placeholder: T.comment, maxlength: 1000, rows: 2 });
        box.textContent = '';
        box.append(ta, h('button', { type: 'button', t: 'feedback-send', text: 'Send', onclick: (e) => send('down', ta.value.trim(), e.target) }));
        box.hidden = false;
        ta.focus();
        box.scrollIntoView({ block: 'nearest' });
      };
      if (m.rated) thanks();
      return h('div', { class: 'fbbox' }, [h('div', { class: 'small fb' }, [h('span', { text: T.helpful }), up, down]), box]);
    }

    /* ----- sessionStorage: the transcript survives a page navigation ----- */

    _save() {
      try {
        sessionStorage.setItem(this._key(), JSON.stringify({ c: this._conv, m: this._msgs.filter((m) => !BUSY[m.state]) },
          (k, v) => (v instanceof Node ? undefined : v))); // leave the DOM references out
      } catch (e) { /* full or blocked: the transcript just won't survive navigation */ }
    }

    _restore() {
      let d;
      try { d = JSON.parse(sessionStorage.getItem(this._key())); } catch (e) { /* ignore */ }
      if (!d || !Array.isArray(d.m)) return;
      if (d.c) this._setConv(str(d.c));
      // Saved values go back through the same textContent-only rendering as live ones.
      d.m.forEach((x) => {
        if (x && /^(user|assistant)$/.test(x.role) && /^(done|refused|error|stopped)$/.test(x.state)) {
          this._add(Object.assign(x, { text: str(x.text), notice: str(x.notice) }));
        }
      });
    }
  }

  if (!customElements.get(TAG)) customElements.define(TAG, CitewiseChat);

  // Usage A: a <script data-widget-id=...> mounts its own widget and passes every
  // data-* attribute on, minus the prefix. A bare <script src> (usage B) mounts nothing.
  if (SCRIPT && SCRIPT.dataset.widgetId != null) {
    const mount = () => {
      const el = document.createElement(TAG);
      for (const a of SCRIPT.attributes) if (/^data-./.test(a.name)) el.setAttribute(a.name.slice(5), a.value);
      document.body.append(el);
    };
    if (document.body) mount();
    else addEventListener('DOMContentLoaded', mount);
  }
})();
