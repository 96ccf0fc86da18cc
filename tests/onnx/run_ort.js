// Runs an ONNX model with onnxruntime (CPU) on float32 images, for the export tests:
//   node run_ort.js MODEL.onnx IMAGES.f32 N C H W OUT.f32 [BATCH]
// IMAGES.f32 holds N*C*H*W little-endian float32 values (raw pixels); OUT.f32 receives the logits.
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

async function main() {
  const [model, images, n, c, h, w, out, batchArg] = process.argv.slice(2);
  if (!out) {
    console.error('usage: node run_ort.js MODEL.onnx IMAGES.f32 N C H W OUT.f32 [BATCH]');
    process.exit(2);
  }
  const [N, C, H, W] = [n, c, h, w].map(Number);
  const batch = Number(batchArg || 500);
  const buffer = fs.readFileSync(images);
  const data = new Float32Array(buffer.buffer, buffer.byteOffset, buffer.byteLength / 4);
  if (data.length !== N * C * H * W) throw new Error(`${images}: expected ${N * C * H * W} floats`);
  // One thread and no graph rewrites: the run computes the graph as written.
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'disabled',
  });
  const chunks = [];
  for (let i = 0; i < N; i += batch) {
    const m = Math.min(batch, N - i);
    const x = new ort.Tensor('float32', data.subarray(i * C * H * W, (i + m) * C * H * W),
                             [m, C, H, W]);
    const result = await session.run({ image: x });
    chunks.push(Buffer.from(result.logits.data.buffer, result.logits.data.byteOffset,
                            result.logits.data.byteLength));
  }
  fs.writeFileSync(out, Buffer.concat(chunks));
}

main().catch((e) => {
  console.error(e.message || e);
  process.exit(1);
});
