/**
 * A self-contained SVG flame graph: one box per call path, as wide as its inclusive time (or
 * calls), callers below callees, siblings in name order. Each box's tooltip (<title>) names the
 * function and gives its time, share and calls. In a browser it is interactive, like Brendan
 * Gregg's: click a box to zoom to it, "Search" highlights the functions matching a regular
 * expression and says their share, "Reset zoom" undoes. The script is inline: no external
 * resources; viewers without scripts show the full graph.
 */
import { formatDuration } from './report.js'
import { callTree, inclusiveWeight, type CallTreeNode, type StackWeight } from './calltree.js'
import { frameLabels, type CallTimeline, type FrameLabelOptions } from './timeline.js'

/** How flameGraphSvg() draws. */
export interface FlameGraphOptions extends FrameLabelOptions {
  /** the text above the graph (default "Flame graph") */
  title?: string
  /** What a box's width measures (default 'time'). */
  weight?: StackWeight
  /** Width of the image in pixels (default 1200). */
  width?: number
  /** The timeline holds samples (addSample): times are sampled, and its frame opens are not calls. */
  sampled?: boolean
}

const FRAME_HEIGHT = 16
const FONT_SIZE = 11
/** Monospace advance at FONT_SIZE, to cut labels to their box. */
const CHAR_WIDTH = FONT_SIZE * 0.6
const PAD = 10
const HEADER = 44
const FOOTER = 10
/** Boxes narrower than this are not drawn (their time stays in their caller's box). */
const MIN_WIDTH = 0.2

interface Placed {
  node: CallTreeNode
  x: number
  level: number
}

/** The timeline's calls as an SVG document (a string). */
export function flameGraphSvg(timeline: CallTimeline, options: FlameGraphOptions = {}): string {
  const weight = options.weight ?? 'time'
  const width = options.width ?? 1200
  const labels = frameLabels(timeline, options)
  const root = callTree(timeline)
  const rootValue = inclusiveWeight(root, weight)
  const scale = rootValue > 0 ? (width - 2 * PAD) / rootValue : 0

  const placed: Placed[] = []
  let levels = 1
  let hidden = 0
  const pending: Placed[] = [{ node: root, x: PAD, level: 0 }]
  const byLabel = (a: CallTreeNode, b: CallTreeNode) => (labels[a.frame]! < labels[b.frame]! ? -1 : labels[a.frame]! > labels[b.frame]! ? 1 : 0)
  while (pending.length > 0) {
    const box = pending.pop()!
    if (inclusiveWeight(box.node, weight) * scale < MIN_WIDTH) {
      hidden++
      continue
    }
    placed.push(box)
    levels = Math.max(levels, box.level + 1)
    let x = box.x
    for (const child of [...box.node.children].sort(byLabel)) {
      pending.push({ node: child, x, level: box.level + 1 })
      x += inclusiveWeight(child, weight) * scale
    }
  }

  const height = HEADER + levels * FRAME_HEIGHT + FOOTER
  const bottom = HEADER + levels * FRAME_HEIGHT
  const totalCalls = root.subtreeCalls
  const subtitle =
    (options.sampled ? `${formatDuration(root.totalNs)} sampled; ` : `${totalCalls} call${totalCalls === 1 ? '' : 's'}, ${formatDuration(root.totalNs)} traced; `) +
    `box width: ${weight === 'time' ? 'inclusive time' : 'calls'}` +
    (hidden > 0 ? `; ${hidden} path${hidden === 1 ? '' : 's'} too narrow to draw` : '')
  const out: string[] = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
    '<style>text { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 11px; fill: #000 } ' +
      '.title { font-size: 16px; text-anchor: middle } .subtitle { fill: #555; text-anchor: middle } ' +
      'g:hover rect { stroke: #000; stroke-width: 0.5 } g { cursor: pointer } .control { fill: #1a4d8f; cursor: pointer } ' +
      '.hidden { display: none }</style>',
    `<script><![CDATA[${ZOOM_SCRIPT.replace(/WIDTH/g, String(width)).replace(/PAD/g, String(PAD))}]]></script>`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#f8f8f8"/>`,
    `<text class="title" x="${width / 2}" y="20">${escapeXml(options.title ?? 'Flame graph')}</text>`,
    `<text class="subtitle" x="${width / 2}" y="36">${escapeXml(subtitle)}</text>`,
    `<text class="control" id="reset" x="${PAD}" y="20" onclick="zoom()">Reset zoom</text>`,
    `<text class="control" x="${width - PAD}" y="20" text-anchor="end" onclick="search()">Search</text>`,
    `<text id="matched" x="${width - PAD}" y="36" text-anchor="end"></text>`,
  ]
  for (const { node, x, level } of placed) {
    const boxWidth = inclusiveWeight(node, weight) * scale
    const y = bottom - (level + 1) * FRAME_HEIGHT
    const label = node.frame < 0 ? 'all' : labels[node.frame]!
    const share = rootValue > 0 ? ((100 * inclusiveWeight(node, weight)) / rootValue).toFixed(2) : '0.00'
    const calls = node.frame < 0 ? totalCalls : node.calls
    const tooltip = `${label}: ${options.sampled ? '' : `${calls} call${calls === 1 ? '' : 's'}, `}${formatDuration(node.totalNs)} (${share}%)`
    const fill = node.frame < 0 ? 'rgb(220,220,220)' : color(timeline.frames[node.frame]!.func)
    out.push(
      `<g data-x="${x.toFixed(2)}" data-w="${boxWidth.toFixed(2)}" data-l="${level}" data-label="${escapeXml(label)}" onclick="zoom(this)"><title>${escapeXml(tooltip)}</title>` +
        `<rect x="${x.toFixed(2)}" y="${y}" width="${boxWidth.toFixed(2)}" height="${FRAME_HEIGHT - 1}" rx="2" fill="${fill}"/>` +
        fitText(label, x, y, boxWidth) +
        '</g>',
    )
  }
  out.push('</svg>', '')
  return out.join('\n')
}

/**
 * Zoom and search in the browser: each box carries its drawn x, width, level and label; zooming
 * to a box widens it and what is above it to the full width, keeps what is below it (its
 * callers) at full width too, and hides the rest. Labels are cut to their box again.
 */
const ZOOM_SCRIPT = `
function boxes() { return Array.from(document.querySelectorAll('g[data-l]')) }
function fit(g, x, w) {
  var rect = g.querySelector('rect'), text = g.querySelector('text'), label = g.getAttribute('data-label')
  rect.setAttribute('x', x.toFixed(2)); rect.setAttribute('width', w.toFixed(2))
  if (!text) { text = document.createElementNS('http://www.w3.org/2000/svg', 'text'); text.setAttribute('y', Number(rect.getAttribute('y')) + ${FRAME_HEIGHT - 4}); g.appendChild(text) }
  var room = Math.floor((w - 6) / ${CHAR_WIDTH})
  text.textContent = room < 3 ? '' : label.length <= room ? label : label.slice(0, room - 2) + '..'
  text.setAttribute('x', (x + 3).toFixed(2))
}
function zoom(target) {
  var x0 = target ? Number(target.getAttribute('data-x')) : PAD, w0 = target ? Number(target.getAttribute('data-w')) : WIDTH - 2 * PAD
  var l0 = target ? Number(target.getAttribute('data-l')) : 0, scale = (WIDTH - 2 * PAD) / w0
  boxes().forEach(function (g) {
    var x = Number(g.getAttribute('data-x')), w = Number(g.getAttribute('data-w')), l = Number(g.getAttribute('data-l'))
    var inside = x >= x0 - 0.01 && x + w <= x0 + w0 + 0.01, around = x <= x0 + 0.01 && x + w >= x0 + w0 - 0.01
    var shown = l >= l0 ? inside : around
    g.classList.toggle('hidden', !shown)
    if (shown) fit(g, l >= l0 ? PAD + (x - x0) * scale : PAD, l >= l0 ? w * scale : WIDTH - 2 * PAD)
  })
}
function search() {
  var pattern = prompt('Search for functions matching (a regular expression; empty clears):', '')
  if (pattern === null) return
  var regex = pattern ? new RegExp(pattern) : null, counted = [], total = 0
  boxes().forEach(function (g) {
    var hit = regex !== null && regex.test(g.getAttribute('data-label')), rect = g.querySelector('rect')
    if (!rect.hasAttribute('data-fill')) rect.setAttribute('data-fill', rect.getAttribute('fill'))
    rect.setAttribute('fill', hit ? 'rgb(230,0,230)' : rect.getAttribute('data-fill'))
    if (Number(g.getAttribute('data-l')) === 0) total = Number(g.getAttribute('data-w'))
    // A match inside another match is already counted in it.
    if (hit && !counted.some(function (o) { return o.x <= Number(g.getAttribute('data-x')) + 0.01 && o.x + o.w >= Number(g.getAttribute('data-x')) + Number(g.getAttribute('data-w')) - 0.01 && o.l < Number(g.getAttribute('data-l')) }))
      counted.push({ x: Number(g.getAttribute('data-x')), w: Number(g.getAttribute('data-w')), l: Number(g.getAttribute('data-l')) })
  })
  var share = counted.reduce(function (sum, o) { return sum + o.w }, 0)
  document.getElementById('matched').textContent = regex ? 'Matched: ' + (total > 0 ? (100 * share / total).toFixed(1) : '0') + '%' : ''
}
`

function fitText(label: string, x: number, y: number, width: number): string {
  const room = Math.floor((width - 6) / CHAR_WIDTH)
  if (room < 3) return ''
  const text = label.length <= room ? label : `${label.slice(0, room - 2)}..`
  return `<text x="${(x + 3).toFixed(2)}" y="${y + FRAME_HEIGHT - 4}">${escapeXml(text)}</text>`
}

/** A warm colour that depends only on the function's name, so one function keeps its colour. */
function color(name: string): string {
  let hash = 2166136261
  for (let i = 0; i < name.length; i++) hash = Math.imul(hash ^ name.charCodeAt(i), 16777619)
  const a = (hash >>> 0) % 1000
  const b = ((hash >>> 10) >>> 0) % 1000
  return `rgb(${205 + Math.round((50 * a) / 1000)},${Math.round((230 * b) / 1000)},${Math.round((55 * a) / 1000)})`
}

function escapeXml(text: string): string {
  // XML 1.0 cannot carry most control characters, even escaped.
  return text.replace(/[\x00-\x08\x0b\x0c\x0e-\x1f]/g, '?').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!)
}
