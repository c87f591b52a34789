// One image's decoder inputs as the server ships them (GET /api/features/<image>, annotate/browser_decode.py):
// "IFE1", uint32 LE header length N, N bytes of JSON header, zero padding to 8, then the little-endian tensors,
// each at a multiple of 8 bytes from the data start: float16 (the header's "dtype"), or float32 where a tensor's
// own "dtype" says so. The decoder takes float32.

const MAGIC = "IFE1";
const ALIGN = 8;

export class PayloadError extends Error {}

let halfTable = null;

// float16 bits -> float32 value for every one of the 65536 patterns (256 KB, built once): for engines
// without Float16Array (Node 20, older browsers).
function buildHalfTable() {
  const table = new Float32Array(65536);
  for (let bits = 0; bits < 65536; bits++) {
    const sign = bits & 0x8000 ? -1 : 1, exponent = (bits >> 10) & 0x1f, mantissa = bits & 0x3ff;
    let value;
    if (exponent === 0) { value = mantissa * 2 ** -24; }  // zero and subnormals
    else if (exponent === 31) { value = mantissa ? NaN : Infinity; }
    else { value = (1024 + mantissa) * 2 ** (exponent - 25); }
    table[bits] = sign * value;
  }
  return table;
}

/** count little-endian float16 values at byteOffset of buffer (a multiple of 2) -> a new Float32Array. */
export function halfToFloat(buffer, byteOffset, count, { useNative = true } = {}) {
  if (useNative && typeof Float16Array === "function") {  // eslint-disable-line no-undef
    return new Float32Array(new Float16Array(buffer, byteOffset, count));  // eslint-disable-line no-undef
  }
  halfTable ??= buildHalfTable();
  const half = new Uint16Array(buffer, byteOffset, count);  // little-endian hosts only: every browser engine is
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) { out[i] = halfTable[half[i]]; }
  return out;
}

/** Parse a payload (ArrayBuffer) -> {header, tensors: Map name -> {shape, data: Float32Array}}. */
export function parsePayload(buffer, options = {}) {
  const bytes = new Uint8Array(buffer);
  if (bytes.length < 8 || new TextDecoder().decode(bytes.subarray(0, 4)) !== MAGIC) {
    throw new PayloadError("not an interformer feature payload");
  }
  const length = new DataView(buffer).getUint32(4, true);
  if (8 + length > bytes.length) { throw new PayloadError("the payload's header is cut short"); }
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + length)));
  const start = Math.ceil((8 + length) / ALIGN) * ALIGN;
  const tensors = new Map();
  for (const t of header.tensors) {
    const dtype = t.dtype || header.dtype;
    const size = { float16: 2, float32: 4 }[dtype];
    if (!size) { throw new PayloadError(`tensor ${t.name} has dtype ${dtype}, not float16 or float32`); }
    const elements = t.shape.reduce((a, b) => a * b, 1);
    const offset = start + t.offset;
    if (elements !== t.length || t.offset % ALIGN || offset + size * t.length > bytes.length) {
      throw new PayloadError(`tensor ${t.name} does not fit the payload`);
    }
    const data = size === 2 ? halfToFloat(buffer, offset, t.length, options)
      : new Float32Array(buffer.slice(offset, offset + 4 * t.length));  // little-endian hosts, as above
    tensors.set(t.name, { shape: t.shape, data });
  }
  return { header, tensors };
}
