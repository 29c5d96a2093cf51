// The browser's EventSource cannot send an Authorization header, so streams are read with
// fetch and parsed here (the WHATWG framing: `field: value` lines, a blank line ends a
// message, `:` starts a comment). Yields {id, data} per message and null per comment (the
// server's heartbeat), so a reader knows the connection is alive.
export async function* sseMessages(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let data = [];
  let id = null;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      for (;;) {
        const m = /\r\n|\r|\n/.exec(buf);
        // A lone CR at the end may be the first half of a CRLF: wait for more.
        if (!m || (m[0] === "\r" && m.index === buf.length - 1)) break;
        const line = buf.slice(0, m.index);
        buf = buf.slice(m.index + m[0].length);
        if (line === "") {
          if (data.length) yield { id, data: data.join("\n") };
          data = [];
          continue;
        }
        if (line.startsWith(":")) {
          yield null;
          continue;
        }
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "data") data.push(value);
        else if (field === "id" && !value.includes("\0")) id = value;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}
