// A 0/1 mask as a 1-bit greyscale PNG (what the server's own masks are), written directly: a canvas would give
// an RGBA PNG four times the size, and only on the main thread. Deflate comes from CompressionStream
// (browsers, workers and Node 18+), whose "deflate" is the zlib stream PNG's IDAT wants.

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];
let crcTable = null;

function crc32(bytes, crc = 0xffffffff) {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) { c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1; }
      crcTable[n] = c >>> 0;
    }
  }
  for (let i = 0; i < bytes.length; i++) { crc = crcTable[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8); }
  return crc;
}

function chunk(type, data) {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  const typed = out.subarray(4, 8 + data.length);
  typed.set([...type].map((c) => c.charCodeAt(0)));
  typed.set(data, 4);
  view.setUint32(8 + data.length, (crc32(typed) ^ 0xffffffff) >>> 0);
  return out;
}

async function deflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** (height, width) 0/1 Uint8Array -> the bytes of a 1-bit greyscale PNG (1 = white). */
export async function maskPng(bits, width, height) {
  const stride = Math.ceil(width / 8);
  const raw = new Uint8Array((stride + 1) * height);  // each row: filter type 0, then the packed pixels
  for (let y = 0; y < height; y++) {
    const row = y * (stride + 1) + 1, src = y * width;
    for (let x = 0; x < width; x++) { if (bits[src + x]) { raw[row + (x >> 3)] |= 0x80 >> (x & 7); } }
  }
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header.set([1, 0, 0, 0, 0], 8);  // bit depth 1, greyscale, deflate, no filter choice, no interlace
  const parts = [Uint8Array.from(SIGNATURE), chunk("IHDR", header), chunk("IDAT", await deflate(raw)),
                 chunk("IEND", new Uint8Array(0))];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => { out.set(p, at); return at + p.length; }, 0);
  return out;
}

/** Bytes -> base64 (btoa takes a binary string: built in slices, not one argument per byte). */
export function base64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) { text += String.fromCharCode(...bytes.subarray(i, i + 0x8000)); }
  return btoa(text);
}
