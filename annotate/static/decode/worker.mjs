// The click decoder in the browser: onnxruntime-web (WebAssembly) in this module worker, so that a decoder run
// never blocks the page. The page sends requests {id, type, ...} and gets {id, ...reply} or {id, error, status,
// code} back; the messages are listed at BrowserDecoder in index.html.
//
// State: the decoder session; an LRU of images' float32 decoder inputs (fetched from /api/features/<image>);
// one ClickSession (session.mjs, the runtime's protocol) per object, kept until the page drops it. An object
// outlives its image's inputs in the LRU: they are fetched again when it is clicked.

import { REF_UNKNOWN, sameRefLabelCodes } from "./clicks.mjs";
import { ClickSession } from "./session.mjs";
import { parsePayload } from "./payload.mjs";
import { base64, maskPng } from "./png.mjs";

// Images whose inputs stay in memory. A 1024x768 photo's inputs are 8 MB as float32 (feat0 is 32 x 192 x 256,
// the context tokens are small; 4 MB shipped as float16), 512x512 2.8 MB: 4 images is at most ~32 MB beside
// onnxruntime's own heap, and holds the image shown, the next two the page prefetches and the one before.
const IMAGE_CACHE = 4;
// Clicks whose logits stay for an undo without a decoder run, as the server's sessions (annotate/sessions.py):
// one (h, w) float32 map each, 3 MB at 1024x768; an older undo reruns the decoder. Only the objects clicked
// last keep them (and their last logits), so memory does not grow with the objects of a long session: an idle
// object keeps its (h, w) reference label and prediction (0.75 MB each at 1024x768) and a few KB per click.
const UNDO_CACHE = 2;
const OBJECTS_WITH_LOGITS = 2;

let ort = null;
let decoder = null;  // ort.InferenceSession
let config = null;  // the init message
let ready = null;  // the init's promise: requests sent meanwhile wait for it
let modelQueue = Promise.resolve();  // one decoder run at a time: runs that overlap only slow each other down
let warmed = false;  // the first decoder run of a session costs 3-4 runs: done once, before the first click
let decoderMs = 0;  // time in decoder runs so far: a reply tells how much of its time was the run itself
const images = new Map();  // name -> Promise<image>, in least-recently-used-first order
const objects = new Map();  // object id -> {image, session: ClickSession, queue}

class RequestFailure extends Error {
  constructor(message, status, code) {
    super(message);
    Object.assign(this, { status, code });
  }
}

// --------------------------------------------------------------------------------------------- model

async function init(msg) {
  const started = performance.now();
  if (!sameRefLabelCodes(msg.refLabelCodes)) {
    throw new Error(`the server's reference-label codes ${JSON.stringify(msg.refLabelCodes)} are not this page's`);
  }
  ort = await import(msg.ortBase + "ort.wasm.min.mjs");
  ort.env.wasm.wasmPaths = msg.ortBase;
  // Threads need SharedArrayBuffer, which only a cross-origin isolated page has.
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.max(1, msg.threads | 0) : 1;
  ort.env.wasm.proxy = false;  // this is already a worker
  const bytes = await fetchBytes(msg.decoderUrl, "the decoder");
  decoder = await ort.InferenceSession.create(new Uint8Array(bytes), {
    executionProviders: ["wasm"], graphOptimizationLevel: "all",
  });
  const wanted = Object.entries(msg.inputs).filter(([key, name]) => key !== "logits" && name);
  const missing = wanted.map(([, name]) => name).filter((name) => !decoder.inputNames.includes(name));
  if (missing.length) { throw new Error(`the decoder has no input ${missing.join(", ")}`); }
  config = msg;
  return { threads: ort.env.wasm.numThreads, bytes: bytes.byteLength, ms: performance.now() - started,
           isolated: self.crossOriginIsolated };
}

async function fetchBytes(url, what) {
  const response = await fetch(url);
  if (!response.ok) {
    let message = `${what}: HTTP ${response.status}`;
    let code;
    try {
      const body = await response.json();
      message = body.error || message;
      code = body.code;
    } catch { /* not JSON */ }
    throw new RequestFailure(message, response.status, code);
  }
  return response.arrayBuffer();
}

async function runDecoder(image, refPadded, roi, counted = true) {
  const [padH, padW] = image.padded;
  const names = config.inputs;
  const feeds = { ...image.feed, [names.ref_label]: new ort.Tensor("uint8", refPadded, [1, 1, padH, padW]) };
  if (names.roi) {
    const box = roi || [0, 0, padW, padH];  // no zoom-in: the whole canvas
    feeds[names.roi] = new ort.Tensor("int64", BigInt64Array.from(box, BigInt), [1, 4]);
  }
  const run = modelQueue.then(async () => {
    const started = performance.now();
    const outputs = await decoder.run(feeds);
    if (counted) { decoderMs += performance.now() - started; }
    return outputs[names.logits].data;
  });
  modelQueue = run.catch(() => {});
  return run;
}

// -------------------------------------------------------------------------------------------- images

function featuresUrl(name) {
  return config.featuresBase + name.split("/").map(encodeURIComponent).join("/");
}

async function fetchImage(name) {
  const started = performance.now();
  const buffer = await fetchBytes(featuresUrl(name), `the features of ${name}`);
  const { header, tensors } = parsePayload(buffer);
  if (config.modelId && header.model_id !== config.modelId) {
    throw new RequestFailure(`the server now runs another model (${header.model_id}): reload the page`, 409);
  }
  const feed = {};
  for (const [key, name] of Object.entries(config.inputs)) {
    const tensor = tensors.get(key);
    if (tensor) { feed[name] = new ort.Tensor("float32", tensor.data, tensor.shape); }
  }
  return { name, header, feed, original: header.original_size, encoded: header.encoded_size,
           padded: header.padded_size, bytes: buffer.byteLength, fetchMs: performance.now() - started };
}

/** The image's inputs, from the LRU or fetched (one fetch per image however many ask at once). */
function imageInputs(name) {
  let entry = images.get(name);
  if (entry) {
    images.delete(name);  // re-inserted: most recently used
  } else {
    entry = fetchImage(name);
    entry.catch(() => { if (images.get(name) === entry) { images.delete(name); } });  // a failure is not kept
  }
  images.set(name, entry);
  while (images.size > IMAGE_CACHE) { images.delete(images.keys().next().value); }
  return entry;
}

async function load(msg) {
  const cached = images.has(msg.image);
  const image = await imageInputs(msg.image);
  if (msg.warm && !warmed) {  // in the background, while the annotator looks at the image
    warmed = true;
    const [padH, padW] = image.padded;
    runDecoder(image, new Uint8Array(padH * padW).fill(REF_UNKNOWN), null, false).catch(() => { warmed = false; });
  }
  return { cached, bytes: image.bytes, fetchMs: image.fetchMs, original: image.original, encoded: image.encoded };
}

// ------------------------------------------------------------------------------------------- objects

// The object's session is made once its image's inputs are there (the sizes come with them); requests that
// arrive meanwhile queue behind that. A failed load forgets the object, so that the next click tries again.
function newObject(id, name) {
  const obj = { image: name, session: null };
  obj.queue = imageInputs(name).then((image) => {
    const [height, width] = image.original;
    obj.session = new ClickSession({
      height, width, encodedSize: image.encoded, paddedSize: image.padded, zoomIn: config.usesRoi,
      zoom: config.zoomIn, radii: [config.clicks.inner_radius, config.clicks.outer_radius], undoCache: UNDO_CACHE,
      decode: async (refPadded, roi) => runDecoder(await imageInputs(obj.image), refPadded, roi),
    });
  }, (err) => {
    if (objects.get(id) === obj) { objects.delete(id); }
    throw err;
  });
  objects.set(id, obj);
  return obj;
}

// The object becomes the most recently used; the logits of objects used longer ago are let go.
function touch(id, obj) {
  objects.delete(id);
  objects.set(id, obj);
  let keep = OBJECTS_WITH_LOGITS;
  for (const other of [...objects.values()].reverse()) {
    if (keep > 0) { keep--; } else if (other.session) { other.session.forgetLogits(); }
  }
}

// One request of an object at a time, in order (the first waits for the session to exist).
function withObject(obj, work) {
  const done = obj.queue.then(work);
  obj.queue = done.then(() => {}, () => {
    if (!obj.session) { throw new RequestFailure(`the object on ${obj.image} has no session`, 409); }
  });
  return done;
}

function maskReply(obj, started, runBefore) {
  const session = obj.session;
  const mask = session.mask();
  let area = 0;
  for (let i = 0; i < mask.length; i++) { area += mask[i]; }
  return [{ clicks: session.clicks.map((c) => [c.x, c.y, c.positive]), mask, width: session.width,
            height: session.height, area, decodeMs: performance.now() - started, runMs: decoderMs - runBefore },
          [mask.buffer]];
}

async function click(msg) {
  const obj = objects.get(msg.object) || newObject(msg.object, msg.image);
  touch(msg.object, obj);
  return withObject(obj, async () => {
    if (obj.session.numClicks >= config.maxClicks) {
      throw new RequestFailure(`an object takes at most ${config.maxClicks} clicks: start a new object`, 409);
    }
    const started = performance.now(), runBefore = decoderMs;
    await obj.session.addClick(msg.y, msg.x, msg.positive);
    return maskReply(obj, started, runBefore);
  });
}

function existing(msg) {
  const obj = objects.get(msg.object);
  if (!obj) { throw new RequestFailure(`unknown object ${msg.object}`, 404, "object_gone"); }
  return obj;
}

async function undo(msg) {
  const obj = existing(msg);
  touch(msg.object, obj);
  return withObject(obj, async () => {
    const started = performance.now(), runBefore = decoderMs;
    if (obj.session.numClicks) { await obj.session.undo(); }
    return maskReply(obj, started, runBefore);
  });
}

async function reset(msg) {
  const obj = existing(msg);
  return withObject(obj, async () => {
    const started = performance.now(), runBefore = decoderMs;
    obj.session.reset();
    return maskReply(obj, started, runBefore);
  });
}

async function drop(msg) {
  objects.delete(msg.object);
  return {};
}

async function png(msg) {
  return { png: base64(await maskPng(msg.bits, msg.width, msg.height)) };
}

const HANDLERS = { init, load, click, undo, reset, drop, png };

self.onmessage = async (event) => {
  const msg = event.data;
  try {
    const handler = HANDLERS[msg.type];
    if (!handler) { throw new Error(`unknown request ${msg.type}`); }
    if (msg.type === "init") {
      ready = init(msg);
    } else if (!ready) {
      throw new Error("the decoder is not loaded");
    }
    await ready;
    const result = msg.type === "init" ? await ready : await handler(msg);
    const [reply, transfer] = Array.isArray(result) ? result : [result, []];
    self.postMessage({ id: msg.id, ...reply }, transfer);
  } catch (err) {
    self.postMessage({ id: msg.id, error: err && err.message ? err.message : String(err), status: err.status,
                       code: err.code });
  }
};
