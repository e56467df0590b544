/**
 * What post-build optimization a version asks for. Declared here, beside the
 * code that applies it, so the optimizer depends on nothing above it; the
 * worker protocol (src/worker/protocol.ts) carries it on the wire.
 */
import { Type, type Static } from '@sinclair/typebox';

export const WasmOptLevelSchema = Type.Union([Type.Literal('O1'), Type.Literal('O2'), Type.Literal('O3'), Type.Literal('O4'), Type.Literal('Os'), Type.Literal('Oz')]);

/** Every default filled in. */
export const OptimizeOptionsSchema = Type.Object(
  {
    strip: Type.Boolean(),
    wasmOpt: Type.Union([Type.Literal('off'), ...WasmOptLevelSchema.anyOf]),
    wizer: Type.Boolean(),
    memoryCapPages: Type.Union([Type.Integer({ minimum: 1, maximum: 65536 }), Type.Null()]),
  },
  { additionalProperties: false },
);
export type OptimizeOptions = Static<typeof OptimizeOptionsSchema>;
