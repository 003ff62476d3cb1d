// Reference outputs of face-api's own expression and age/gender networks (TF.js, pure-JS CPU backend),
// for tests/test_face_api.py. Usage: node face_api_reference.js MODEL_DIR SPEC.json
// SPEC.json: {"inputs": [{"path": "x.bin", "shape": [H, W, 3]}, ...], "batch": true|false}
// Each input is float32 little-endian RGB in 0..255, HWC, as face-api takes an image tensor.
// batch=true runs all inputs as one face-api batch (they are padded/resized to 112 each), else one by one.
// Prints one JSON line: {"backend", "tfjs", "expression": [[7]...], "age": [...], "gender": [[male, female]...]}.
'use strict';

const fs = require('fs');
const path = require('path');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');

async function main() {
  const [modelDir, specPath] = process.argv.slice(2);
  if (!modelDir || !specPath) throw new Error('usage: node face_api_reference.js MODEL_DIR SPEC.json');
  const { tf } = faceapi;
  await tf.setBackend('cpu');
  await tf.ready();
  await faceapi.nets.faceExpressionNet.loadFromDisk(modelDir);
  await faceapi.nets.ageGenderNet.loadFromDisk(modelDir);

  const spec = JSON.parse(fs.readFileSync(specPath, 'utf8'));
  const base = path.dirname(specPath);
  const tensors = spec.inputs.map(({ path: p, shape }) => {
    const buf = fs.readFileSync(path.resolve(base, p));
    const values = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
    return tf.tensor3d(values, shape, 'float32');
  });
  const groups = spec.batch ? [tensors] : tensors.map((t) => [t]);
  const result = { backend: tf.getBackend(), tfjs: tf.version_core, expression: [], age: [], gender: [] };
  for (const group of groups) {
    const input = await faceapi.toNetInput(group.length === 1 ? group[0] : group);
    const expression = faceapi.nets.faceExpressionNet.forwardInput(input);
    const { age, gender } = faceapi.nets.ageGenderNet.forwardInput(input);
    result.expression.push(...expression.arraySync());
    result.age.push(...age.arraySync());
    result.gender.push(...gender.arraySync());
    tf.dispose([expression, age, gender]);
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err) => {
  process.stderr.write(`face_api_reference: ${err.message}\n`);
  process.exit(1);
});
