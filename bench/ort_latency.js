// onnxruntime's batch latency for bench/engine_vs_ort.py: onnxruntime-node (from tests/onnx), all
// graph optimisations, `threads` intra-op threads, random uniform [0, 1) input of the given shape.
//   node bench/ort_latency.js MODEL.onnx D0,D1,... RUNS THREADS
// Prints {"median_ms": ..., "min_ms": ..., "runs": ...}.
'use strict';
const path = require('path');
const ort = require(path.join(__dirname, '..', 'tests', 'onnx', 'node_modules', 'onnxruntime-node'));

async function main() {
  const [model, shapeArg, runsArg, threadsArg] = process.argv.slice(2);
  const dims = shapeArg.split(',').map(Number);
  const runs = Number(runsArg || 200), threads = Number(threadsArg || 1);
  const session = await ort.InferenceSession.create(model, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
  const n = dims.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; ++i) data[i] = Math.random();
  const feeds = {};
  feeds[session.inputNames[0]] = new ort.Tensor('float32', data, dims);
  for (let i = 0; i < Math.min(20, runs); ++i) await session.run(feeds);
  const ms = [];
  for (let i = 0; i < runs; ++i) {
    const t0 = process.hrtime.bigint();
    await session.run(feeds);
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  ms.sort((a, b) => a - b);
  console.log(JSON.stringify({median_ms: ms[Math.floor(ms.length / 2)], min_ms: ms[0], runs}));
}

main().catch((e) => {
  console.error(e.message || e);
  process.exit(1);
});
