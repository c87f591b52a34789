// The page's click protocol (annotate/static/decode/*.mjs) against cases written by the Python code
// (tests/test_browser_clicks.py sets INTERFORMER_GOLDEN_DIR and runs `node --test tests/js/`). Without that
// folder only the self-contained tests at the end run; the golden ones are skipped.

import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";

import {
  addClick, clicksToRefLabel, maskAtSize, mergeRefLabels, resizeBilinear, rint,
  updateRefLabelWithPrediction, zoomRoi, zoomRoiPadded,
} from "../../annotate/static/decode/clicks.mjs";
import { halfToFloat, parsePayload } from "../../annotate/static/decode/payload.mjs";
import { ClickSession } from "../../annotate/static/decode/session.mjs";
import { maskPng } from "../../annotate/static/decode/png.mjs";

const GOLDEN = process.env.INTERFORMER_GOLDEN_DIR;
const skip = GOLDEN ? false : "INTERFORMER_GOLDEN_DIR not set (tests/test_browser_clicks.py sets it)";
const load = (name) => JSON.parse(readFileSync(join(GOLDEN, name), "utf8"));

const ARRAYS = { uint8: Uint8Array, float32: Float32Array, int32: Int32Array };

function unpack({ dtype, b64 }) {
  const bytes = Buffer.from(b64, "base64");
  const copy = new Uint8Array(bytes.length);  // own, aligned buffer
  copy.set(bytes);
  return new ARRAYS[dtype](copy.buffer);
}

// Equal element by element (NaN equals NaN; -0 and 0 too): the first difference in the message.
function assertSameArray(actual, expected, what) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i], e = expected[i];
    if (a !== e && !(Number.isNaN(a) && Number.isNaN(e))) {
      assert.fail(`${what}: element ${i} is ${a}, Python has ${e}`);
    }
  }
}

const click = ([y, x, positive]) => ({ y, x, positive });

describe("core functions", { skip }, () => {
  const cases = GOLDEN ? load("functions.json") : {};

  test("clicks_to_ref_label", () => {
    for (const [k, c] of cases.labels.entries()) {
      const [h, w] = c.shape;
      assertSameArray(clicksToRefLabel(c.clicks.map(click), h, w, ...c.radii), unpack(c.out), `labels ${k}`);
    }
  });

  test("add_click", () => {
    for (const [k, c] of cases.add.entries()) {
      const [h, w] = c.ref.shape;
      assertSameArray(addClick(unpack(c.ref), h, w, click(c.click), ...c.radii), unpack(c.out), `add ${k}`);
    }
  });

  test("merge_ref_labels and update_ref_label_with_prediction", () => {
    for (const [k, c] of cases.merge.entries()) {
      assertSameArray(mergeRefLabels(unpack(c.prev), unpack(c.new)), unpack(c.out), `merge ${k}`);
    }
    for (const [k, c] of cases.update.entries()) {
      assertSameArray(updateRefLabelWithPrediction(unpack(c.ref), unpack(c.pred)), unpack(c.out), `update ${k}`);
    }
  });

  test("zoom_roi and zoom_roi_padded", () => {
    for (const [k, c] of cases.roi.entries()) {
      const [h, w] = c.pred.shape;
      const [expand, minSize, stride] = c.params;
      const pred = unpack(c.pred), ref = unpack(c.ref);
      assert.deepEqual(zoomRoi(pred, ref, h, w, expand, minSize, stride), c.roi, `roi ${k}`);
      assert.deepEqual(zoomRoiPadded(pred, ref, h, w, stride, expand, minSize), c.padded, `padded roi ${k}`);
    }
  });

  test("resize_bilinear and the mask at the photo's size", () => {
    for (const [k, c] of cases.resize.entries()) {
      const [h, w] = c.src.shape, [height, width] = c.size;
      const src = unpack(c.src);
      assertSameArray(resizeBilinear(src, h, w, height, width), unpack(c.out), `resize ${k}`);
      assertSameArray(maskAtSize(src, h, w, height, width), unpack(c.mask), `mask ${k}`);
    }
  });
});

describe("click sessions", { skip }, () => {
  const cases = GOLDEN ? load("sessions.json") : [];

  async function replay(c) {
    const [height, width] = c.original;
    const table = c.table.map((t) => ({ key: Buffer.from(unpack(t.ref)).toString("base64") + JSON.stringify(t.roi),
                                        logits: unpack(t.logits) }));
    const calls = [];
    const decode = async (padded, roi) => {
      assert.equal(padded.length, c.padded[0] * c.padded[1]);
      const key = Buffer.from(padded).toString("base64") + JSON.stringify(roi);
      const index = table.findIndex((t) => t.key === key);
      assert.notEqual(index, -1, `decoder input #${calls.length} is none of Python's (ref label or roi differ)`);
      calls.push(index);
      return table[index].logits;
    };
    const session = new ClickSession({ height, width, encodedSize: c.encoded, paddedSize: c.padded, zoomIn: c.zoom_in,
                                       zoom: c.zoom, radii: c.radii, undoCache: c.undo_cache, decode });
    for (const [k, step] of c.steps.entries()) {
      const where = `${c.original} -> ${c.encoded}, zoom ${c.zoom_in}, step ${k} (${step.action})`;
      const before = calls.length;
      if (step.action === "click") { await session.addClick(...step.click); }
      else if (step.action === "undo") { await session.undo(); }
      else { session.reset(); }
      assert.deepEqual(calls.slice(before), step.calls, `${where}: decoder runs`);
      assert.deepEqual(session.clicks.map((q) => [q.y, q.x, q.positive]), step.clicks, `${where}: clicks`);
      assert.deepEqual(session.roi, step.roi, `${where}: roi`);
      assertSameArray(session.ref, unpack(step.ref), `${where}: reference label`);
      assertSameArray(session.mask(), unpack(step.mask), `${where}: mask`);
    }
  }

  for (const [k, c] of cases.entries()) {
    test(`session ${k}: ${c.original.join("x")} encoded ${c.encoded.join("x")}, zoom-in ${c.zoom_in}`, () => replay(c));
  }
});

describe("payload and PNG", { skip }, () => {
  test("payloads parse to the float32 values of what they ship (float16, or float32 where a tensor says so)", () => {
    for (const [file, expectedTensors] of Object.entries(load("payload.json"))) {
      const bytes = readFileSync(join(GOLDEN, file));
      const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length);
      for (const useNative of [false, true]) {
        const { tensors } = parsePayload(buffer, { useNative });
        assert.deepEqual([...tensors.keys()], Object.keys(expectedTensors));
        for (const [name, expected] of Object.entries(expectedTensors)) {
          assert.deepEqual(tensors.get(name).shape, expected.shape, name);
          assertSameArray(tensors.get(name).data, unpack(expected), `${file} ${name} (Float16Array: ${useNative})`);
        }
      }
    }
  });

  test("masks as 1-bit PNG files (read back by the Python side)", async () => {
    const out = join(GOLDEN, "out");
    mkdirSync(out, { recursive: true });
    for (const c of load("png.json")) {
      const [height, width] = c.mask.shape;
      writeFileSync(join(out, c.file), await maskPng(unpack(c.mask), width, height));
    }
  });
});

describe("self-contained", () => {
  test("rint rounds half to even, never to -0", () => {
    assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999, 3.0000001].map(rint), [0, 2, 2, 0, -2, -2, 2, 3]);
    assert.ok(Object.is(rint(-0.4), 0));
  });

  test("float16 table: specials and subnormals", () => {
    const half = Uint16Array.of(0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x3c00, 0x7bff, 0x7c00, 0xfc00, 0x7e00,
                                0xc000);
    const out = halfToFloat(half.buffer, 0, half.length, { useNative: false });
    assert.deepEqual([...out], [0, -0, 2 ** -24, 1023 * 2 ** -24, 2 ** -14, 1, 65504, Infinity, -Infinity, NaN, -2]);
  });
});
