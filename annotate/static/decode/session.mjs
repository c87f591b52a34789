// One object's clicks on one image, as runtime/session.py's ClickSession: the click protocol of clicks.mjs around
// an injected decoder, with undo from a compact history.

import {
  addClick, aboveZero, initialRefLabel, logitDifference, maskAtSize, padRefLabel, toModel,
  updateRefLabelWithPrediction, zoomRoiPadded,
} from "./clicks.mjs";

// A map of few distinct runs (a reference label) as [code, length] runs: undo history at a few KB per click.
function packRuns(codes) {
  const values = [], lengths = [];
  for (let i = 0; i < codes.length;) {
    let j = i + 1;
    while (j < codes.length && codes[j] === codes[i]) { j++; }
    values.push(codes[i]); lengths.push(j - i);
    i = j;
  }
  return { values: Uint8Array.from(values), lengths: Uint32Array.from(lengths), size: codes.length };
}

function unpackRuns({ values, lengths, size }) {
  const out = new Uint8Array(size);
  for (let k = 0, i = 0; k < values.length; i += lengths[k], k++) { out.fill(values[k], i, i + lengths[k]); }
  return out;
}

function packBits(bits) {
  const out = new Uint8Array(Math.ceil(bits.length / 8));
  for (let i = 0; i < bits.length; i++) { if (bits[i]) { out[i >> 3] |= 0x80 >> (i & 7); } }
  return out;
}

function unpackBits(packed, count) {
  const out = new Uint8Array(count);
  for (let i = 0; i < count; i++) { out[i] = (packed[i >> 3] >> (7 - (i & 7))) & 1; }
  return out;
}

/**
 * One object's clicks on one image: runtime/session.py ClickSession, with the decoder injected.
 *
 * options: {height, width} of the photo; encodedSize [h, w]; paddedSize [Hp, Wp]; zoomIn (bool); zoom
 * {expand_ratio, min_size, stride, start_click}; radii [inner, outer]; undoCache (logits kept for undo);
 * decode(refPadded Uint8Array Hp*Wp, roi [l, u, r, b] | null) -> Promise<Float32Array (1, 2, Hp, Wp) logits>.
 */
export class ClickSession {
  constructor(options) {
    Object.assign(this, {
      height: options.height, width: options.width, zoomIn: !!options.zoomIn, zoom: options.zoom,
      radii: options.radii, decodeLogits: options.decode, undoCache: Math.max(0, options.undoCache ?? 8),
    });
    [this.h, this.w] = options.encodedSize;
    [this.padH, this.padW] = options.paddedSize;
    this.decoderRuns = 0;
    this.reset();
  }

  reset() {
    this.clicks = [];
    this.roi = null;
    this.history = [];  // per click: {roi, refIn (runs), pred (bits)}
    this.logitsCache = [];  // per click: its (h, w) logit difference, or null once older than undoCache
    this.ref = initialRefLabel(this.h, this.w);
    this.pred = new Uint8Array(this.h * this.w);
    this.diff = null;
  }

  get numClicks() { return this.clicks.length; }

  /** A new (H, W) 0/1 mask (all 0 before the first click): the caller may transfer it. */
  mask() {
    if (this.diff === null) { return new Uint8Array(this.height * this.width); }
    return maskAtSize(this.diff, this.h, this.w, this.height, this.width);
  }

  /** Click at original-image pixel (y, x). */
  async addClick(y, x, positive) {
    if (!Number.isInteger(y) || !Number.isInteger(x)) {
      throw new RangeError("click coordinates must be integer pixels");
    }
    if (!(y >= 0 && y < this.height && x >= 0 && x < this.width)) {
      throw new RangeError(`click (${y}, ${x}) lies outside the ${this.height}x${this.width} image`);
    }
    const [my, mx] = toModel(y, x, this.height, this.width, this.h, this.w);
    const refIn = addClick(this.ref, this.h, this.w, { y: my, x: mx, positive: !!positive }, ...this.radii);
    let roi = null;
    if (this.zoomIn && this.clicks.length >= this.zoom.start_click) {
      const { stride, expand_ratio: expandRatio, min_size: minSize } = this.zoom;
      roi = zoomRoiPadded(this.pred, refIn, this.h, this.w, stride, expandRatio, minSize);
    }
    const diff = await this.decode(refIn, roi);
    const pred = aboveZero(diff);
    this.history.push({ roi, refIn: packRuns(refIn), pred: packBits(pred) });
    this.logitsCache.push(diff);
    const dropped = this.logitsCache.length - this.undoCache - 1;  // memory stays flat over long sessions
    if (dropped >= 0) { this.logitsCache[dropped] = null; }
    this.clicks.push({ y, x, positive: !!positive });
    this.setState(refIn, pred, diff, roi);
  }

  async decode(refIn, roi) {
    const padded = padRefLabel(refIn, this.h, this.w, this.padH, this.padW);
    const logits = await this.decodeLogits(padded, roi);
    this.decoderRuns += 1;
    return logitDifference(logits, this.padH, this.padW, this.h, this.w);
  }

  setState(refIn, pred, diff, roi) {
    this.ref = updateRefLabelWithPrediction(refIn, pred);
    this.pred = pred;
    this.diff = diff;
    this.roi = roi;
  }

  /** Let go of the logits kept for undo (an undo reruns the decoder instead): for objects not in use. */
  forgetLogits() {
    this.logitsCache.fill(null);
    this.diff = null;  // read only right after a click, undo or reset, which set it again
  }

  /** Remove the last click; a decoder run only when its logits are older than undoCache. */
  async undo() {
    if (!this.history.length) { throw new RangeError("nothing to undo"); }
    this.history.pop();
    this.logitsCache.pop();
    this.clicks.pop();
    if (!this.history.length) { this.reset(); return; }
    const step = this.history[this.history.length - 1];
    const refIn = unpackRuns(step.refIn);
    const pred = unpackBits(step.pred, this.h * this.w);
    let diff = this.logitsCache[this.logitsCache.length - 1];
    if (diff === null) {  // deterministic decoder: recomputing gives the same logits
      diff = this.logitsCache[this.logitsCache.length - 1] = await this.decode(refIn, step.roi);
    }
    this.setState(refIn, pred, diff, step.roi);
  }
}
