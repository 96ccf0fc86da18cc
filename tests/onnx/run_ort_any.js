// Runs any ONNX model of one float32 input with onnxruntime (CPU, one thread, no graph rewrites):
//   node run_ort_any.js MODEL.onnx INPUT.f32 D0,D1,... OUTPUT.f32
// INPUT.f32 holds the input's little-endian float32 values; OUTPUT.f32 receives the first output's,
// and its dimensions are printed as a JSON list.
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

async function main() {
  const [model, input, shapeArg, output] = process.argv.slice(2);
  if (!output) {
    console.error('usage: node run_ort_any.js MODEL.onnx INPUT.f32 D0,D1,... OUTPUT.f32');
    process.exit(2);
  }
  const dims = shapeArg.split(',').map(Number);
  const buffer = fs.readFileSync(input);
  const data = new Float32Array(buffer.buffer, buffer.byteOffset, buffer.byteLength / 4);
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'disabled',
  });
  const feeds = {};
  feeds[session.inputNames[0]] = new ort.Tensor('float32', data, dims);
  const result = await session.run(feeds);
  const y = result[session.outputNames[0]];
  fs.writeFileSync(output, Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength));
  console.log(JSON.stringify(y.dims));
}

main().catch((e) => {
  console.error(e.message || e);
  process.exit(1);
});
