import { useChat } from '@ai-sdk/react';
import { DefaultChatTransport } from 'ai';
import { useState } from 'react';
import { createRoot } from 'react-dom/client';

// Which knowledge base to ask, and a key if the service requires one (never ship an admin
// key to a browser: use a query key, or a widget token).
const transport = new DefaultChatTransport({
  api: '/v1/ui/chat',
  body: { kb: import.meta.env.VITE_CITEWISE_KB ?? 'default' },
  headers: import.meta.env.VITE_CITEWISE_KEY
    ? { Authorization: `Bearer ${import.meta.env.VITE_CITEWISE_KEY}` }
    : {},
});

function Answer({ message }) {
  const text = message.parts.filter((p) => p.type === 'text').map((p) => p.text).join('');
  const sources = message.parts.filter((p) => p.type === 'source-url');
  const citations = message.parts.find((p) => p.type === 'data-citations')?.data ?? [];
  const cited = new Set(citations.map((c) => String(c.n)));
  return (
    <div className="answer">
      <p style={{ whiteSpace: 'pre-wrap' }}>{text}</p>
      {citations.map((c) => (
        <blockquote key={c.n} title={c.supported ? 'supported by the passage' : 'not supported'}>
          [{c.n}] “{c.quote}” — <a href={c.url}>{c.title}</a> {c.supported ? '✓' : '⚠'}
        </blockquote>
      ))}
      <details>
        <summary>{sources.length} sources read</summary>
        <ol>
          {sources.map((s) => (
            <li key={s.sourceId} style={{ fontWeight: cited.has(s.sourceId) ? 'bold' : 'normal' }}>
              <a href={s.url}>{s.title}</a>
            </li>
          ))}
        </ol>
      </details>
    </div>
  );
}

function Chat() {
  const { messages, sendMessage, status, error } = useChat({ transport });
  const [input, setInput] = useState('');
  return (
    <main style={{ maxWidth: 720, margin: '2rem auto', fontFamily: 'system-ui' }}>
      <h1>Ask the docs</h1>
      {messages.map((m) =>
        m.role === 'user' ? (
          <p key={m.id}><b>You:</b> {m.parts.map((p) => p.text).join('')}</p>
        ) : (
          <Answer key={m.id} message={m} />
        ),
      )}
      {error && <p role="alert">Something went wrong: {error.message}</p>}
      <form
        onSubmit={(event) => {
          event.preventDefault();
          if (input.trim()) sendMessage({ text: input });
          setInput('');
        }}
      >
        <input value={input} onChange={(e) => setInput(e.target.value)} placeholder="Ask a question" />
        <button type="submit" disabled={status !== 'ready'}>Ask</button>
      </form>
    </main>
  );
}

createRoot(document.getElementById('root')).render(<Chat />);
