// Asks a running Citewise through the Vercel AI SDK's own client code, as a useChat front end
// does: DefaultChatTransport posts the UI messages, readUIMessageStream assembles the answer
// from the stream parts. Prints the assembled message (and any error) as one JSON line.
//
//   node ui_chat_client.mjs <api url> <question> [kb] [bearer key] [earlier question]
import { DefaultChatTransport, readUIMessageStream } from 'ai';

const [url, question, kb, key, earlier] = process.argv.slice(2);
const message = (id, role, text) => ({ id, role, parts: [{ type: 'text', text }] });
const messages = earlier
  ? [message('u0', 'user', earlier), message('a0', 'assistant', '(earlier answer)')]
  : [];
messages.push(message('u1', 'user', question));

const transport = new DefaultChatTransport({
  api: url,
  body: kb ? { kb } : {},
  headers: key ? { Authorization: `Bearer ${key}` } : {},
});

const result = { message: null, error: null, contentType: null, streamHeader: null };
try {
  const stream = await transport.sendMessages({
    chatId: 'chat-1',
    messages,
    abortSignal: undefined,
    trigger: 'submit-message',
    messageId: undefined,
  });
  for await (const snapshot of readUIMessageStream({
    stream,
    onError: (error) => { result.error = String(error?.message ?? error); },
  })) {
    result.message = snapshot;
  }
} catch (error) {
  result.error = String(error?.message ?? error);
}
process.stdout.write(JSON.stringify(result) + '\n');
