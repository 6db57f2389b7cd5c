import { constants } from 'node:os'

/**
 * The name of the error a syscall's raw return value stands for: the kernel returns -errno, in
 * [-4095, -1], for every failure. Tracing sees the value before the C library turns it into
 * errno, so the kernel's restart codes appear too (a blocking call interrupted by a signal).
 */
const KERNEL_ONLY: Record<number, string> = {
  512: 'ERESTARTSYS',
  513: 'ERESTARTNOINTR',
  514: 'ERESTARTNOHAND',
  515: 'ENOIOCTLCMD',
  516: 'ERESTART_RESTARTBLOCK',
}

const MAX_ERRNO = 4095n

// EWOULDBLOCK and EDEADLOCK share EAGAIN's and EDEADLK's numbers: the first name listed wins.
const NAMES = new Map<number, string>(Object.entries(KERNEL_ONLY).map(([nr, name]) => [Number(nr), name]))
for (const [name, nr] of Object.entries(constants.errno)) if (!NAMES.has(nr)) NAMES.set(nr, name)

/** 'ENOENT' for -2, undefined for a success. */
export function errnoName(ret: bigint): string | undefined {
  if (ret >= 0n || ret < -MAX_ERRNO) return undefined
  const nr = Number(-ret)
  return NAMES.get(nr) ?? `E${nr}`
}
