// The click protocol of core/clicks.py (and the resizes of core/preprocess.py), for the browser (worker) and for
// Node (tests); session.mjs holds one object's clicks as runtime/session.py does.
//
// Pure functions on flat row-major typed arrays: a map of (H, W) is a Uint8Array / Float32Array of H * W.
// Bit-identical to the Python code: where Python computes in float32 (numpy float32 arrays, the float32
// scalars of zoom_roi) every intermediate goes through Math.fround. A double result of +, -, * or sqrt on
// float32 inputs rounded once to float32 equals the float32 operation (53 >= 2 * 24 + 2), so
// fround(a op b) is exactly numpy's float32 a op b.

export const REF_BACKGROUND = 0;
export const REF_POSSIBLY_BACKGROUND = 1;
export const REF_UNKNOWN = 2;
export const REF_POSSIBLY_FOREGROUND = 3;
export const REF_FOREGROUND = 4;
export const NUM_REF_LABELS = 5;
// What the server's /api/model must list for this module to speak its protocol (core/spec.py).
export const REF_LABEL_CODES = Object.freeze({
  background: REF_BACKGROUND, possibly_background: REF_POSSIBLY_BACKGROUND, unknown: REF_UNKNOWN,
  possibly_foreground: REF_POSSIBLY_FOREGROUND, foreground: REF_FOREGROUND,
});

const f32 = Math.fround;

/** True when the server's reference-label codes are the ones this module's tables are written for. */
export function sameRefLabelCodes(codes) {
  const names = Object.keys(REF_LABEL_CODES);
  return !!codes && Object.keys(codes).length === names.length && names.every((n) => codes[n] === REF_LABEL_CODES[n]);
}

// MERGE_TABLE[previous * 5 + new], built as core/clicks.py's _build_merge_table.
function buildMergeTable() {
  const soft = {
    [REF_POSSIBLY_BACKGROUND]: { [REF_UNKNOWN]: REF_POSSIBLY_BACKGROUND, [REF_POSSIBLY_FOREGROUND]: REF_UNKNOWN },
    [REF_POSSIBLY_FOREGROUND]: { [REF_UNKNOWN]: REF_POSSIBLY_FOREGROUND, [REF_POSSIBLY_BACKGROUND]: REF_UNKNOWN },
  };
  const table = new Uint8Array(NUM_REF_LABELS * NUM_REF_LABELS);
  for (let prev = 0; prev < NUM_REF_LABELS; prev++) {
    for (let next = 0; next < NUM_REF_LABELS; next++) {
      const definite = next === REF_BACKGROUND || next === REF_FOREGROUND;
      const moved = soft[next] && soft[next][prev];
      table[prev * NUM_REF_LABELS + next] = definite ? next : moved === undefined ? prev : moved;
    }
  }
  return table;
}

export const MERGE_TABLE = buildMergeTable();

/** The reference label before any click: all unknown. */
export function initialRefLabel(height, width) {
  return new Uint8Array(height * width).fill(REF_UNKNOWN);
}

/** (H, W) 0/1: pixels whose distance to the nearest point [y, x] is <= radius (core/clicks.py _disk_union).
 *  As the official code: float32 sqrt of the exact squared distance against the radius cast to float32. */
export function diskUnion(points, height, width, radius) {
  const out = new Uint8Array(height * width);
  const r32 = f32(radius);
  if (!(r32 >= 0)) { return out; }  // negative or NaN: not even the clicked pixel
  const reach = Math.trunc(Math.min(Math.ceil(r32), height + width)) + 1;
  for (const [y, x] of points) {
    forDisk(y, x, height, width, reach, r32, (i) => { out[i] = 1; });
  }
  return out;
}

// Calls visit(index) for each pixel within r32 of (y, x), scanning the (2 reach + 1)^2 window only.
function forDisk(y, x, height, width, reach, r32, visit) {
  const y0 = Math.max(y - reach, 0), y1 = Math.min(y + reach + 1, height);
  const x0 = Math.max(x - reach, 0), x1 = Math.min(x + reach + 1, width);
  for (let yy = y0; yy < y1; yy++) {
    const dy2 = (yy - y) * (yy - y);
    for (let xx = x0; xx < x1; xx++) {
      if (f32(Math.sqrt(f32(dy2 + (xx - x) * (xx - x)))) <= r32) { visit(yy * width + xx); }
    }
  }
}

function checkClick(click, height, width) {
  const { y, x } = click;
  if (!(Number.isInteger(y) && Number.isInteger(x) && y >= 0 && y < height && x >= 0 && x < width)) {
    throw new RangeError(`click (${y}, ${x}) lies outside a ${height}x${width} image`);
  }
}

/** The label of clicks {y, x, positive} on their own (core/clicks.py clicks_to_ref_label). */
export function clicksToRefLabel(clicks, height, width, innerRadius, outerRadius) {
  const label = initialRefLabel(height, width);
  if (!clicks.length) { return label; }
  const points = new Map();  // insertion order = order of first appearance, which decides overlapping inner disks
  for (const click of clicks) {
    checkClick(click, height, width);
    const kind = !!click.positive;
    if (!points.has(kind)) { points.set(kind, []); }
    points.get(kind).push([click.y, click.x]);
  }
  const outer = new Map();
  for (const [kind, pts] of points) { outer.set(kind, diskUnion(pts, height, width, innerRadius + outerRadius)); }
  for (const [kind, mask] of outer) {
    const code = kind ? REF_POSSIBLY_FOREGROUND : REF_POSSIBLY_BACKGROUND;
    for (let i = 0; i < mask.length; i++) { if (mask[i]) { label[i] = code; } }
  }
  if (outer.size === 2) {
    const a = outer.get(true), b = outer.get(false);
    for (let i = 0; i < label.length; i++) { if (a[i] && b[i]) { label[i] = REF_UNKNOWN; } }
  }
  for (const [kind, pts] of points) {
    const inner = diskUnion(pts, height, width, innerRadius);
    const code = kind ? REF_FOREGROUND : REF_BACKGROUND;
    for (let i = 0; i < inner.length; i++) { if (inner[i]) { label[i] = code; } }
  }
  return label;
}

/** MERGE_TABLE[previous, new] per pixel: a new array (core/clicks.py merge_ref_labels). */
export function mergeRefLabels(previous, next) {
  if (previous.length !== next.length) { throw new RangeError("shape mismatch"); }
  const out = new Uint8Array(previous.length);
  for (let i = 0; i < out.length; i++) {
    const p = previous[i], n = next[i];
    if (p >= NUM_REF_LABELS || n >= NUM_REF_LABELS) { throw new RangeError("reference labels must hold codes 0..4"); }
    out[i] = MERGE_TABLE[p * NUM_REF_LABELS + n];
  }
  return out;
}

/** Merge one click's own label into ref: a new array (core/clicks.py add_click). Only the click's outer disk
 *  can change (the new label is unknown elsewhere, and unknown keeps the previous code), so only it is visited. */
export function addClick(ref, height, width, click, innerRadius, outerRadius) {
  checkClick(click, height, width);
  const out = Uint8Array.from(ref);
  const outerR = f32(innerRadius + outerRadius), innerR = f32(innerRadius);
  const soft = click.positive ? REF_POSSIBLY_FOREGROUND : REF_POSSIBLY_BACKGROUND;
  const hard = click.positive ? REF_FOREGROUND : REF_BACKGROUND;
  const own = new Map();  // pixel -> the click's own code, as clicks_to_ref_label([click]) writes it
  if (outerR >= 0) {
    const reach = Math.trunc(Math.min(Math.ceil(outerR), height + width)) + 1;
    forDisk(click.y, click.x, height, width, reach, outerR, (i) => own.set(i, soft));
  }
  if (innerR >= 0) {
    const reach = Math.trunc(Math.min(Math.ceil(innerR), height + width)) + 1;
    forDisk(click.y, click.x, height, width, reach, innerR, (i) => own.set(i, hard));
  }
  for (const [i, code] of own) { out[i] = MERGE_TABLE[ref[i] * NUM_REF_LABELS + code]; }
  return out;
}

/** Fold a 0/1 prediction into the label: a new array (core/clicks.py update_ref_label_with_prediction). */
export function updateRefLabelWithPrediction(ref, pred) {
  if (ref.length !== pred.length) { throw new RangeError("shape mismatch"); }
  const out = new Uint8Array(ref.length);
  for (let i = 0; i < out.length; i++) {
    const r = ref[i], p = pred[i];
    if (p === 1 && (r === REF_POSSIBLY_BACKGROUND || r === REF_UNKNOWN)) { out[i] = r + 1; }
    else if (p === 0 && (r === REF_UNKNOWN || r === REF_POSSIBLY_FOREGROUND)) { out[i] = r - 1; }
    else { out[i] = r; }
  }
  return out;
}

/** np.rint (round half to even) of a float32 value, as a plain integer (never -0). */
export function rint(value) {
  let r = Math.round(value);  // half up
  if (r - value === 0.5 && r % 2 !== 0) { r -= 1; }
  return r === 0 ? 0 : r;
}

// [left, up, right, bottom] (right/bottom exclusive) of (pred == 1) | (ref == 0) | (ref == 4) over the
// (height, width) maps, or null when that mask is empty.
function objectBox(pred, ref, height, width) {
  let left = width, up = height, right = -1, bottom = -1;
  for (let y = 0; y < height; y++) {
    const row = y * width;
    for (let x = 0; x < width; x++) {
      const r = ref[row + x];
      if (pred[row + x] === 1 || r === REF_FOREGROUND || r === REF_BACKGROUND) {
        if (x < left) { left = x; }
        if (x > right) { right = x; }
        if (y < up) { up = y; }
        bottom = y;
      }
    }
  }
  return right < 0 ? null : [left, up, right + 1, bottom + 1];
}

// Steps 2-3 of core/clicks.py zoom_roi on a box inside a (height, width) image, in float32 as the official torch code.
function expandBox(box, height, width, expandRatio, minSize, stride) {
  const ratio = f32(expandRatio);
  const [left, up, right, bottom] = box.map(f32);
  const xc = f32(f32(left + right) / 2), yc = f32(f32(up + bottom) / 2);
  const away = (c, side) => rint(f32(c - f32(ratio * f32(c - side))));
  let newLeft = Math.max(away(xc, left), 0);
  let newRight = Math.min(away(xc, right), width);
  let newUp = Math.max(away(yc, up), 0);
  let newBottom = Math.min(away(yc, bottom), height);
  if (minSize > 0) {
    const half = f32(minSize / 2);
    newLeft = Math.min(newLeft, Math.max(rint(f32(xc - half)), 0));
    newRight = Math.max(newRight, Math.min(rint(f32(xc + half)), width));
    newUp = Math.min(newUp, Math.max(rint(f32(yc - half)), 0));
    newBottom = Math.max(newBottom, Math.min(rint(f32(yc + half)), height));
  }
  const floorTo = (v) => Math.floor(v / stride) * stride;
  const ceilTo = (v) => Math.ceil(v / stride) * stride;
  return [floorTo(newLeft), floorTo(newUp), ceilTo(newRight), ceilTo(newBottom)];
}

/** core/clicks.py zoom_roi on (height, width) maps: [left, up, right, bottom]. */
export function zoomRoi(pred, ref, height, width, expandRatio, minSize, stride) {
  const box = objectBox(pred, ref, height, width) || [0, 0, width, height];
  return expandBox(box, height, width, expandRatio, minSize, stride);
}

/** core/evaluation.py zoom_roi_padded: the roi of (height, width) maps on the canvas padded to `divisor`.
 *  The padding holds no object pixel (pred 0, ref unknown), so only its size matters. */
export function zoomRoiPadded(pred, ref, height, width, divisor, expandRatio, minSize) {
  const [padH, padW] = paddedShape(height, width, divisor);
  const box = objectBox(pred, ref, height, width) || [0, 0, padW, padH];
  return expandBox(box, padH, padW, expandRatio, minSize, divisor);
}

export function paddedShape(height, width, divisor) {
  return [Math.ceil(height / divisor) * divisor, Math.ceil(width / divisor) * divisor];
}

/** (h, w) codes on a (padH, padW) canvas, the padding unknown (core/preprocess.py pad_ref_label). */
export function padRefLabel(ref, height, width, padH, padW) {
  if (padH === height && padW === width) { return ref; }
  const out = new Uint8Array(padH * padW).fill(REF_UNKNOWN);
  for (let y = 0; y < height; y++) { out.set(ref.subarray(y * width, (y + 1) * width), y * padW); }
  return out;
}

/** float32 logits[1] - logits[0] over the top-left (h, w) of (1, 2, padH, padW) logits. */
export function logitDifference(logits, padH, padW, height, width) {
  const diff = new Float32Array(height * width);  // stores round to float32: numpy's float32 subtraction
  const plane = padH * padW;
  for (let y = 0; y < height; y++) {
    const i = y * padW, o = y * width;
    for (let x = 0; x < width; x++) { diff[o + x] = logits[plane + i + x] - logits[i + x]; }
  }
  return diff;
}

/** 0/1 map of diff > 0. */
export function aboveZero(diff) {
  const out = new Uint8Array(diff.length);
  for (let i = 0; i < diff.length; i++) { out[i] = diff[i] > 0 ? 1 : 0; }
  return out;
}

// Source indices and float32 weights of one axis (core/preprocess.py _bilinear_axis): half-pixel centres,
// coordinates in float64 as numpy computes them, edge-clamped.
function bilinearAxis(nIn, nOut) {
  const lower = new Int32Array(nOut), upper = new Int32Array(nOut), weight = new Float32Array(nOut);
  const ratio = nIn / nOut;
  for (let i = 0; i < nOut; i++) {
    const coord = Math.min(Math.max((i + 0.5) * ratio - 0.5, 0), nIn - 1);
    lower[i] = Math.floor(coord);
    upper[i] = Math.min(lower[i] + 1, nIn - 1);
    weight[i] = coord - lower[i];
  }
  return { lower, upper, weight };
}

/** core/preprocess.py resize_bilinear of an (h, w) float32 map to (H, W): a new Float32Array. */
export function resizeBilinear(src, h, w, height, width) {
  const out = new Float32Array(height * width);
  resizeRows(src, h, w, height, width, (y, row) => out.set(row, y * width));
  return out;
}

// Calls emit(y, values of output row y) for each row; values is a scratch row reused across rows.
function resizeRows(src, h, w, height, width, emit) {
  const ay = bilinearAxis(h, height), ax = bilinearAxis(w, width);
  const rows = new Float32Array(w), line = new Float32Array(width);
  for (let y = 0; y < height; y++) {
    const a = ay.lower[y] * w, b = ay.upper[y] * w, wy = ay.weight[y];
    for (let x = 0; x < w; x++) { rows[x] = src[a + x] + f32(f32(src[b + x] - src[a + x]) * wy); }
    for (let x = 0; x < width; x++) {
      const lo = rows[ax.lower[x]];
      line[x] = lo + f32(f32(rows[ax.upper[x]] - lo) * ax.weight[x]);
    }
    emit(y, line);
  }
}

/** The (H, W) 0/1 mask of an (h, w) logit difference: resize_bilinear(diff) > 0, one pass with a row of scratch
 *  (no (H, W) float map); diff > 0 itself when the image was encoded at full size. */
export function maskAtSize(diff, h, w, height, width) {
  if (h === height && w === width) { return aboveZero(diff); }
  const out = new Uint8Array(height * width);
  resizeRows(diff, h, w, height, width, (y, line) => {
    const o = y * width;
    for (let x = 0; x < width; x++) { out[o + x] = line[x] > 0 ? 1 : 0; }
  });
  return out;
}

/** Original-image pixel -> encoded-grid pixel by pixel centre (runtime/session.py _to_model). */
export function toModel(y, x, height, width, modelH, modelW) {
  if (modelH === height && modelW === width) { return [y, x]; }
  return [Math.min(modelH - 1, Math.trunc((y + 0.5) * modelH / height)),
          Math.min(modelW - 1, Math.trunc((x + 0.5) * modelW / width))];
}
