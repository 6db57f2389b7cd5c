import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

/** The raw addon (native/): a generic BPF session and the C layouts of the event structs. */
export interface NativeSession {
  attachUsdt(program: string, pid: number, path: string, provider: string, name: string): void
  attachUprobe(program: string, pid: number, path: string, fileOffset: bigint, refCtrOffset: bigint): void
  start(options: {
    batch: Uint8Array
    onBatch(bytes: number, count: number): void
    onEnd(): void
    exitPid: number
    flushIntervalMs: number
  }): void
  pause(): void
  resume(): void
  counters(): Record<string, bigint>
  close(): Promise<void>
}

export interface StructLayout {
  size: number
  fields: Record<string, number>
}

interface Binding {
  Session: new (options: {
    object: string
    ringBufferBytes?: number
    constants?: Record<string, number | bigint>
  }) => NativeSession
  layouts: Record<string, StructLayout> & { constants: Record<string, number> }
}

/** Errors thrown by the addon carry the errno of the failed call. */
export interface NativeError extends Error {
  errno: number
  code: string
}

export function isNativeError(error: unknown): error is NativeError {
  return error instanceof Error && typeof (error as NativeError).errno === 'number'
}

const packageRoot = fileURLToPath(new URL('..', import.meta.url))
const require = createRequire(import.meta.url)
// node-gyp-build finds a local build (build/Release) or a prebuild (prebuilds/linux-x64).
export const binding: Binding = require('node-gyp-build')(packageRoot)
