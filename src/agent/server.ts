/**
 * The agent's HTTP endpoint: GET /metrics in Prometheus's text format, and nothing else. It reads
 * and never acts: no request can attach to, detach from or change anything.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Registry } from 'prom-client'
import { CliError } from '../cli/errors.js'

export interface ListenAddress {
  host: string
  port: number
}

/** `HOST:PORT`, `[IPv6]:PORT` or `:PORT` (loopback); port 0 picks a free one. */
export function parseListenAddress(text: string): ListenAddress | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text)
  if (!m) return undefined
  const port = Number(m[3])
  if (port > 65535) return undefined
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port }
}

/** Serves `registry` on `address`; rejects with a one-line CliError when the address cannot be had. */
export async function serveMetrics(registry: Registry, address: ListenAddress): Promise<Server> {
  const server = createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://agent').pathname
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('read-only: GET /metrics\n')
      return
    }
    if (path === '/metrics') {
      registry.metrics().then(
        (text) => response.writeHead(200, { 'content-type': registry.contentType }).end(request.method === 'HEAD' ? undefined : text),
        (error: unknown) => response.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(error)}\n`),
      )
      return
    }
    response.writeHead(path === '/' ? 200 : 404, { 'content-type': 'text/plain' }).end('usdtrace agent: GET /metrics\n')
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      const why = error.code === 'EADDRINUSE' ? 'the address is in use' : error.code === 'EADDRNOTAVAIL' ? 'no interface has that address' : error.message
      reject(new CliError(`cannot listen on ${address.host}:${address.port}: ${why}; choose another --listen`, { cause: error }))
    })
    server.listen(address.port, address.host, resolve)
  })
  return server
}

/** Where a listening server can be reached, e.g. http://127.0.0.1:9464/metrics */
export function metricsUrl(server: Server): string {
  const { address, port, family } = server.address() as AddressInfo
  return `http://${family === 'IPv6' ? `[${address}]` : address}:${port}/metrics`
}
