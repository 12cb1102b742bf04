/**
 * Splits one text frame into its messages: the server may put several JSON
 * messages in one frame, separated by '\n'. Empty parts are skipped. Each
 * result is {msg} or {error} for a part that is not valid JSON.
 */
export function splitFrame(data) {
  const out = [];
  for (const part of String(data).split('\n')) {
    if (part.trim() === '') continue;
    try {
      out.push({ msg: JSON.parse(part) });
    } catch (err) {
      out.push({ error: err, raw: part });
    }
  }
  return out;
}
