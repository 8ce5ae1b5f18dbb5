//! The chart drawn as SVG: every network a horizontal bus, every node a box between the
//! buses it has NICs on, every Hyper-V host a box holding its vSwitch and its VMs.
//!
//! ```text
//!   gutter │ bus 0 ════════════════════════════════════════
//!          │          │ nic            │ nic
//!          │      ┌── band 0 ──┐   ┌───┴───┐
//!          │      │ node       │   │ node  │
//!          │      └─────┬──────┘   └───┬───┘
//!          │ bus 1 ═════╪══════════════╪════  (sessions: lanes just below a bus;
//!          │            │ ...              a trace: arrows just above it)
//! ```
//!
//! A node sits in the band below the highest bus it touches; lines to lower buses pass
//! through the bands between, and the horizontal packing reserves the node's width in
//! each of them, so no box, line end or label lands on another. Text is monospace, so
//! its width is known here, and [`layout`] returns every box and label it placed: the
//! tests check that none overlap.

use std::fmt::Write;

use super::{EdgeKind, Graph};
use crate::Hop;

const CHAR_W: f64 = 7.3;
const FONT: f64 = 12.0;
const PAD: f64 = 8.0;
const CELL_H: f64 = 18.0;
const TITLE_H: f64 = 18.0;
const LINE_H: f64 = 15.0;
const GAP: f64 = 24.0;
const STUB: f64 = 22.0;
const LANE: f64 = 6.0;
const TRACE_LANE: f64 = 20.0;
const PORT_H: f64 = 36.0;
const MIN_BAND: f64 = 60.0;
const MARGIN: f64 = 20.0;
/// The spacing of port lines in a host's aisles.
const AISLE_LANE: f64 = 5.0;
/// A band wider than this is wrapped into rows.
const ROW_WIDTH: f64 = 2400.0;

/// A rectangle, in SVG user units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    fn new(x: f64, y: f64, w: f64, h: f64) -> Rect {
        Rect { x, y, w, h }
    }

    /// Whether the two share any area.
    pub fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.x + o.w && o.x < self.x + self.w && self.y < o.y + o.h && o.y < self.y + self.h
    }

    /// Whether `o` lies wholly inside.
    pub fn contains(&self, o: &Rect) -> bool {
        o.x >= self.x
            && o.y >= self.y
            && o.x + o.w <= self.x + self.w
            && o.y + o.h <= self.y + self.h
    }

    fn right(&self) -> f64 {
        self.x + self.w
    }

    fn bottom(&self) -> f64 {
        self.y + self.h
    }
}

/// A trace to draw over the chart: the request's hops, then the reply's, numbered.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overlay<'a> {
    pub request: &'a [Hop],
    pub reply: &'a [Hop],
}

impl Overlay<'_> {
    fn hops(&self) -> impl Iterator<Item = (usize, &Hop, bool)> {
        self.request
            .iter()
            .map(|h| (h, false))
            .chain(self.reply.iter().map(|h| (h, true)))
            .enumerate()
            .map(|(i, (h, reply))| (i + 1, h, reply))
    }
}

/// A piece of text and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub text: String,
    pub rect: Rect,
    pub bold: bool,
    pub color: &'static str,
}

/// Where everything goes.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    pub width: f64,
    pub height: f64,
    /// Each node's box (by index into [`Graph::nodes`]).
    pub boxes: Vec<Rect>,
    /// Boxes that are not nodes: NIC cells, panels.
    pub cells: Vec<Rect>,
    pub labels: Vec<Label>,
    /// Each bus: its y and its x extent.
    pub buses: Vec<(f64, f64, f64)>,
    lines: Vec<Line>,
    /// Small dots where a NIC meets a bus.
    dots: Vec<(f64, f64)>,
    arrows: Vec<Arrow>,
    /// Each node's NICs: where the NIC's line meets its box (x, y), for sessions.
    nic_points: Vec<Vec<(f64, f64)>>,
    /// Each host's vSwitch bar: y.
    bars: Vec<Option<f64>>,
}

/// A straight line: from, to, colour, dash pattern (empty: solid), width.
#[derive(Debug, Clone, Copy)]
struct Line {
    from: (f64, f64),
    to: (f64, f64),
    color: &'static str,
    dash: &'static str,
    width: f64,
}

fn line(
    from: (f64, f64),
    to: (f64, f64),
    color: &'static str,
    dash: &'static str,
    width: f64,
) -> Line {
    Line {
        from,
        to,
        color,
        dash,
        width,
    }
}

/// A hop of a trace: its path, colour (request or reply), number and the number's place.
#[derive(Debug, Clone)]
struct Arrow {
    points: Vec<(f64, f64)>,
    color: &'static str,
    number: usize,
    badge: (f64, f64),
}

impl Layout {
    /// Every straight line drawn (NIC lines, port lines, sessions, joints, the legend's
    /// samples): from, to.
    pub fn segments(&self) -> impl Iterator<Item = ((f64, f64), (f64, f64))> + '_ {
        self.lines.iter().map(|l| (l.from, l.to))
    }
}

fn text_w(s: &str) -> f64 {
    s.chars().count() as f64 * CHAR_W
}

/// A node's box, measured but not yet placed: offsets are from its top-left corner.
#[derive(Debug, Clone, Default)]
struct Shape {
    w: f64,
    h: f64,
    /// NIC index, cell rect (relative), on top.
    cells: Vec<(usize, Rect, bool)>,
    /// Text lines (relative): text, x, y (top), bold.
    texts: Vec<(String, f64, f64, bool)>,
    /// For a host: the bar's y, and each VM with its offset.
    bar: Option<f64>,
    /// VM, its offset, its row in the grid.
    vms: Vec<(usize, f64, f64, usize, Shape)>,
    /// Room left of each grid column for the port lines of the rows below the first.
    aisle: f64,
}

fn cells_width(labels: &[&str]) -> f64 {
    if labels.is_empty() {
        return 0.0;
    }
    labels.iter().map(|l| text_w(l) + 12.0).sum::<f64>() + 8.0 * (labels.len() - 1) as f64
}

/// Measures a node's box. `top(nic)` says whether a NIC leaves from the top edge.
fn measure(g: &Graph, n: usize, top: &dyn Fn(usize, usize) -> bool) -> Shape {
    let node = &g.nodes[n];
    let nics: Vec<usize> = (0..node.nics.len()).collect();
    let top_nics: Vec<usize> = nics.iter().copied().filter(|&i| top(n, i)).collect();
    let bottom_nics: Vec<usize> = nics.iter().copied().filter(|&i| !top(n, i)).collect();
    let label = |i: &usize| node.nics[*i].label.as_str();
    let top_w = cells_width(&top_nics.iter().map(label).collect::<Vec<_>>());
    let bottom_w = cells_width(&bottom_nics.iter().map(label).collect::<Vec<_>>());
    let title = format!("{} · {}", node.name, node.kind);
    let mut texts_w = text_w(&title);
    for l in &node.lines {
        texts_w = texts_w.max(text_w(l));
    }
    let vms = g.vms_of(n);
    let vm_shapes: Vec<Shape> = vms.iter().map(|&v| measure(g, v, top)).collect();
    let cols = vm_shapes.len().clamp(1, 3);
    let grid_rows = vm_shapes.len().div_ceil(cols);
    // The port lines of lower rows run down aisles left of the columns, clear of the VMs.
    let aisle = if grid_rows > 1 {
        (grid_rows - 1) as f64 * AISLE_LANE + 6.0
    } else {
        0.0
    };
    let mut grid_w: f64 = 0.0;
    for row in vm_shapes.chunks(cols) {
        grid_w =
            grid_w.max(row.iter().map(|s| s.w + aisle).sum::<f64>() + GAP * (row.len() - 1) as f64);
    }
    if let Some(v) = &node.vswitch {
        texts_w = texts_w.max(text_w(v));
    }
    let w = [top_w, bottom_w, texts_w, grid_w, 110.0 - 2.0 * PAD]
        .into_iter()
        .fold(0.0, f64::max)
        + 2.0 * PAD;

    let mut s = Shape {
        w,
        ..Shape::default()
    };
    let mut y = PAD;
    let mut x = PAD;
    for &i in &top_nics {
        let cw = text_w(label(&i)) + 12.0;
        s.cells.push((i, Rect::new(x, y, cw, CELL_H), true));
        x += cw + 8.0;
    }
    if !top_nics.is_empty() {
        y += CELL_H + 6.0;
    }
    s.texts.push((title, PAD, y, true));
    y += TITLE_H;
    for l in &node.lines {
        s.texts.push((l.clone(), PAD, y, false));
        y += LINE_H;
    }
    if let Some(v) = &node.vswitch {
        y += 4.0;
        s.texts.push((v.clone(), PAD, y, true));
        y += LINE_H + 2.0;
        s.bar = Some(y);
        y += PORT_H;
        let mut row_y = y;
        let mut k = 0;
        s.aisle = aisle;
        for (r, row) in vm_shapes.chunks(cols).enumerate() {
            let mut vx = PAD + aisle;
            let row_h = row.iter().map(|r| r.h).fold(0.0, f64::max);
            for shape in row {
                s.vms.push((vms[k], vx, row_y, r, shape.clone()));
                vx += shape.w + GAP + aisle;
                k += 1;
            }
            row_y += row_h + PORT_H;
        }
        y = row_y - PORT_H + 6.0;
    }
    if !bottom_nics.is_empty() {
        y += 4.0;
        let mut x = PAD;
        for &i in &bottom_nics {
            let cw = text_w(label(&i)) + 12.0;
            s.cells.push((i, Rect::new(x, y, cw, CELL_H), false));
            x += cw + 8.0;
        }
        y += CELL_H;
    }
    s.h = y + PAD;
    s
}

/// Orders the networks top to bottom so that nodes with NICs on several of them span
/// as few bands as possible; networks a NAT faces outward go to the top.
fn order_networks(g: &Graph) -> Vec<usize> {
    let outward = &g.outward;
    let n = g.networks.len();
    let mut weight = vec![vec![0u32; n]; n];
    for (i, node) in g.nodes.iter().enumerate() {
        if g.inside(i).is_some() {
            continue;
        }
        let nets: Vec<usize> = node.nics.iter().map(|c| c.network).collect();
        for a in &nets {
            for b in &nets {
                if a != b {
                    weight[*a][*b] += 1;
                }
            }
        }
    }
    let cost = |order: &[usize]| -> (u64, u64) {
        let mut pos = vec![0usize; n];
        for (p, &net) in order.iter().enumerate() {
            pos[net] = p;
        }
        let mut c = 0u64;
        for a in 0..n {
            for b in 0..n {
                c += u64::from(weight[a][b]) * pos[a].abs_diff(pos[b]) as u64;
            }
        }
        let out: u64 = outward.iter().map(|&o| pos[o] as u64).sum();
        (c, out)
    };
    let mut best: Vec<usize> = (0..n).collect();
    if n > 8 {
        return best;
    }
    let mut best_cost = cost(&best);
    let mut perm: Vec<usize> = (0..n).collect();
    // Heap's algorithm, iteratively: every order once, the first best kept.
    let mut c = vec![0usize; n];
    let mut i = 1;
    while i < n {
        if c[i] < i {
            if i % 2 == 0 {
                perm.swap(0, i);
            } else {
                perm.swap(c[i], i);
            }
            let k = cost(&perm);
            if k < best_cost || (k == best_cost && perm < best) {
                best_cost = k;
                best = perm.clone();
            }
            c[i] += 1;
            i = 1;
        } else {
            c[i] = 0;
            i += 1;
        }
    }
    best
}

/// Places every box, line and label of the chart (with `overlay`'s arrows, if any).
pub fn layout(g: &Graph, overlay: Option<Overlay<'_>>) -> Layout {
    let order = order_networks(g);
    let mut pos = vec![0usize; g.networks.len()];
    for (p, &net) in order.iter().enumerate() {
        pos[net] = p;
    }
    let buses = order.len();
    let top_level: Vec<usize> = (0..g.nodes.len())
        .filter(|&n| g.inside(n).is_none())
        .collect();
    let band_of = |n: usize| -> usize {
        g.nodes[n]
            .nics
            .iter()
            .map(|c| pos[c.network])
            .min()
            .unwrap_or(0)
    };
    let lowest = |n: usize| -> usize {
        g.nodes[n]
            .nics
            .iter()
            .map(|c| pos[c.network])
            .max()
            .unwrap_or(0)
    };
    let top = |n: usize, i: usize| -> bool {
        let nic = &g.nodes[n].nics[i];
        nic.port_of.is_some() || pos[nic.network] == band_of(n)
    };
    let shapes: Vec<Option<Shape>> = (0..g.nodes.len())
        .map(|n| (g.inside(n).is_none()).then(|| measure(g, n, &top)))
        .collect();

    // The gutter holds the buses' names.
    let gutter = g
        .networks
        .iter()
        .map(|n| {
            n.label
                .split(' ')
                .map(text_w)
                .fold(0.0, f64::max)
                .max(text_w(&format!("{} (cont.)", n.name)))
        })
        .fold(120.0, f64::max)
        + 2.0 * MARGIN;

    // Across: each node at the leftmost place free in every band it spans.
    let mut taken: Vec<Vec<(f64, f64)>> = vec![Vec::new(); buses];
    let mut xs = vec![0.0; g.nodes.len()];
    let mut placing = top_level.clone();
    placing.sort_by_key(|&n| (band_of(n), std::cmp::Reverse(lowest(n)), n));
    let width_of = |n: usize| shapes[n].as_ref().map_or(0.0, |s| s.w);
    for &n in &placing {
        let w = width_of(n);
        let bands: Vec<usize> = (band_of(n)..lowest(n).max(band_of(n) + 1)).collect();
        let mut x = gutter;
        loop {
            let clash = bands
                .iter()
                .flat_map(|&b| taken[b].iter())
                .filter(|&&(a, z)| x < z + GAP && a < x + w + GAP)
                .map(|&(_, z)| z)
                .fold(None, |m: Option<f64>, z| Some(m.map_or(z, |m| m.max(z))));
            match clash {
                Some(z) => x = z + GAP,
                None => break,
            }
        }
        for &b in &bands {
            taken[b].push((x, x + w));
        }
        xs[n] = x;
    }

    // A band too wide to read at a glance is wrapped into rows, each between copies of
    // its two buses (the copies joined to the bus at its end), when its nodes reach no
    // further than the next bus and no line passes through it.
    let members = |b: usize| -> Vec<usize> {
        placing
            .iter()
            .copied()
            .filter(|&n| band_of(n) == b)
            .collect()
    };
    let wrap: Option<usize> = (0..buses.saturating_sub(1))
        .filter(|&b| {
            let m = members(b);
            !m.is_empty()
                && m.iter().all(|&n| lowest(n) <= b + 1)
                && top_level
                    .iter()
                    .all(|&n| !(band_of(n) < b && lowest(n) > b))
        })
        .map(|b| {
            let w = members(b)
                .iter()
                .map(|&n| xs[n] + width_of(n) - gutter)
                .fold(0.0, f64::max);
            (b, w)
        })
        .filter(|&(_, w)| w > ROW_WIDTH)
        .max_by(|x, y| x.1.total_cmp(&y.1))
        .map(|(b, _)| b);
    let mut row_of = vec![0usize; g.nodes.len()];
    let mut rows = 1;
    if let Some(b) = wrap {
        let mut x = gutter;
        let mut row = 0;
        for n in members(b) {
            if x > gutter && x + width_of(n) > gutter + ROW_WIDTH {
                row += 1;
                x = gutter;
            }
            xs[n] = x;
            row_of[n] = row;
            x += width_of(n) + GAP;
        }
        rows = row + 1;
    }
    let right = top_level
        .iter()
        .map(|&n| xs[n] + width_of(n))
        .fold(gutter + 200.0, f64::max);

    // Each bus has one instance, a wrapped band's two buses one per row: a node meets the
    // instance of its row.
    let instances = |p: usize| -> usize {
        match wrap {
            Some(b) if p == b || p == b + 1 => rows,
            _ => 1,
        }
    };
    let inst = |n: usize, p: usize| -> usize {
        let n = g.inside(n).unwrap_or(n);
        match wrap {
            Some(b) if band_of(n) == b => row_of[n],
            Some(b) if p == b + 1 => rows - 1,
            _ => 0,
        }
    };
    // Where a bus's instances join: the wrapped band's top bus on the left, its bottom
    // bus on the right.
    let joint = |p: usize| -> f64 {
        match wrap {
            Some(b) if p == b + 1 => right + 10.0,
            _ => gutter - 10.0,
        }
    };

    // Sessions run in lanes just below their bus: along one instance, or along each
    // endpoint's instance to where the instances join.
    let nic_x = |n: usize, net: usize| -> Option<f64> {
        let s = shapes[n].as_ref()?;
        s.cells
            .iter()
            .find(|(i, _, _)| {
                g.nodes[n].nics[*i].network == net && g.nodes[n].nics[*i].port_of.is_none()
            })
            .map(|(_, r, _)| xs[n] + r.x + r.w / 2.0)
    };
    // Per edge, per end: (instance, from x, to x, lane).
    let mut runs: Vec<Vec<(usize, f64, f64, usize)>> = vec![Vec::new(); g.edges.len()];
    let mut lanes_below: Vec<Vec<usize>> = (0..buses).map(|p| vec![0; instances(p)]).collect();
    for (p, per_instance) in lanes_below.iter_mut().enumerate() {
        for (i, lanes) in per_instance.iter_mut().enumerate() {
            let mut spans: Vec<(f64, f64, usize)> = Vec::new();
            for (k, e) in g.edges.iter().enumerate() {
                if pos[e.network] != p {
                    continue;
                }
                let (Some(xa), Some(xb)) = (nic_x(e.a, e.network), nic_x(e.b, e.network)) else {
                    continue;
                };
                let (ia, ib) = (inst(e.a, p), inst(e.b, p));
                let mut add = |from: f64, to: f64| {
                    spans.push((from.min(to), from.max(to), k));
                    runs[k].push((i, from, to, 0));
                };
                if ia == i && ib == i {
                    add(xa, xb);
                } else if ia == i {
                    add(xa, joint(p));
                } else if ib == i {
                    add(xb, joint(p));
                }
            }
            spans.sort_by(|p, q| p.0.total_cmp(&q.0).then(p.2.cmp(&q.2)));
            let mut ends: Vec<f64> = Vec::new();
            for (a, z, k) in spans {
                let lane = match ends.iter().position(|&e| e + 4.0 < a) {
                    Some(l) => l,
                    None => {
                        ends.push(0.0);
                        ends.len() - 1
                    }
                };
                ends[lane] = z;
                // An edge has one run per instance.
                if let Some(run) = runs[k].iter_mut().find(|r| r.0 == i) {
                    run.3 = lane;
                }
            }
            *lanes = ends.len();
        }
    }

    // A trace's hops on each bus instance, in lanes just above it.
    let bus_of_network = |name: &str| g.networks.iter().position(|n| n.name == name);
    let mut trace_lanes: Vec<Vec<usize>> = (0..buses).map(|p| vec![0; instances(p)]).collect();
    if let Some(o) = overlay {
        for (_, h, _) in o.hops() {
            let (Some(net), Some(from), Some(to)) = (
                bus_of_network(&h.network),
                g.nodes.iter().position(|x| x.name == h.from),
                g.nodes.iter().position(|x| x.name == h.to),
            ) else {
                continue;
            };
            let p = pos[net];
            trace_lanes[p][inst(from, p)] += 1;
            if inst(to, p) != inst(from, p) {
                trace_lanes[p][inst(to, p)] += 1;
            }
        }
    }

    // Down: each bus, then its band (or each row of a wrapped band between its copies).
    let title_h = 34.0;
    let mut bus_y: Vec<Vec<f64>> = (0..buses).map(|p| vec![0.0; instances(p)]).collect();
    let mut band_top = vec![0.0; buses];
    let mut row_top = vec![0.0; rows];
    let tallest = |ns: &mut dyn Iterator<Item = usize>| {
        ns.filter_map(|n| shapes[n].as_ref().map(|s| s.h))
            .fold(0.0, f64::max)
    };
    let mut y = MARGIN + title_h;
    let mut p = 0;
    while p < buses {
        let first = if wrap == Some(p.wrapping_sub(1)) && p > 0 {
            // The real bus under a wrapped band is its last row's bottom, placed.
            rows - 1
        } else {
            y += trace_lanes[p][0] as f64 * TRACE_LANE + 14.0;
            bus_y[p][0] = y;
            0
        };
        let below = 10.0 + lanes_below[p][first] as f64 * LANE + STUB;
        if wrap == Some(p) {
            for r in 0..rows {
                if r > 0 {
                    y += trace_lanes[p][r] as f64 * TRACE_LANE + 14.0;
                    bus_y[p][r] = y;
                }
                let below = 10.0 + lanes_below[p][r] as f64 * LANE + STUB;
                row_top[r] = bus_y[p][r] + below;
                let h = tallest(&mut members(p).into_iter().filter(|&n| row_of[n] == r));
                y = row_top[r] + h.max(MIN_BAND - below) + STUB + 16.0;
                y += trace_lanes[p + 1][r] as f64 * TRACE_LANE;
                bus_y[p + 1][r] = y;
                if r + 1 < rows {
                    y += 10.0 + lanes_below[p + 1][r] as f64 * LANE + 30.0;
                }
            }
        } else {
            band_top[p] = bus_y[p][first] + below;
            let h = tallest(&mut top_level.iter().copied().filter(|&n| band_of(n) == p));
            y = band_top[p] + h.max(MIN_BAND - below) + STUB + 16.0;
        }
        p += 1;
    }

    let mut out = Layout {
        boxes: vec![Rect::new(0.0, 0.0, 0.0, 0.0); g.nodes.len()],
        nic_points: vec![Vec::new(); g.nodes.len()],
        bars: vec![None; g.nodes.len()],
        ..Layout::default()
    };
    out.labels.push(Label {
        text: g.title.clone(),
        rect: Rect::new(MARGIN, MARGIN, text_w(&g.title) * 1.1, FONT + 4.0),
        bold: true,
        color: "#222",
    });
    for (p, &net) in order.iter().enumerate() {
        // The instance that carries the bus's name: the first, or a wrapped band's
        // bottom bus's last; the others say they continue it.
        let named = if wrap.is_some_and(|b| p == b + 1) {
            rows - 1
        } else {
            0
        };
        for (i, &y) in bus_y[p].iter().enumerate() {
            // A copy stops short of the other bus's joint, which it must not seem to meet.
            let (x1, x2) = match wrap {
                Some(b) if p == b && i > 0 => (gutter - 10.0, right - 5.0),
                Some(b) if p == b + 1 && i + 1 < rows => (gutter + 5.0, right + 10.0),
                _ => (gutter - 10.0, right + 10.0),
            };
            out.buses.push((y, x1, x2));
            if i != named {
                let text = format!("{} (cont.)", g.networks[net].name);
                out.labels.push(Label {
                    rect: Rect::new(MARGIN, y - 4.0 - FONT, text_w(&text), FONT + 2.0),
                    text,
                    bold: false,
                    color: "#1a3d6d",
                });
            }
        }
        if bus_y[p].len() > 1 {
            let x = joint(p);
            out.lines.push(line(
                (x, bus_y[p][0]),
                (x, bus_y[p][bus_y[p].len() - 1]),
                "#1a3d6d",
                "",
                5.0,
            ));
        }
        let mut words: Vec<String> = vec![g.networks[net].name.clone()];
        let rest = g.networks[net]
            .label
            .strip_prefix(&g.networks[net].name)
            .unwrap_or(&g.networks[net].label)
            .trim();
        // One prefix line, then the rest in lines that fit the gutter.
        let mut line = String::new();
        for word in rest.split(' ') {
            if !line.is_empty() && text_w(&line) + text_w(word) + CHAR_W > gutter - 2.0 * MARGIN {
                words.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        if !line.is_empty() {
            words.push(line);
        }
        let y0 = bus_y[p][named] - 4.0 - FONT;
        for (k, w) in words.iter().enumerate() {
            out.labels.push(Label {
                text: w.clone(),
                rect: Rect::new(MARGIN, y0 + k as f64 * LINE_H, text_w(w), FONT + 2.0),
                bold: k == 0,
                color: "#1a3d6d",
            });
        }
    }

    // The boxes, their cells and lines to the buses.
    let bus_at = |n: usize, net: usize| bus_y[pos[net]][inst(n, pos[net])];
    for &n in &top_level {
        let Some(shape) = &shapes[n] else { continue };
        let top = if wrap == Some(band_of(n)) {
            row_top[row_of[n]]
        } else {
            band_top[band_of(n)]
        };
        place(g, n, shape, (xs[n], top), &bus_at, &mut out);
    }

    // Sessions.
    for (k, e) in g.edges.iter().enumerate() {
        let (color, dash) = style(e.kind, e.up);
        let p = pos[e.network];
        let mut ends = Vec::new();
        for &(i, from, to, lane) in &runs[k] {
            let by = bus_y[p][i];
            let ly = by + 8.0 + lane as f64 * LANE;
            out.lines
                .push(line((from, by), (from, ly), color, dash, 2.0));
            out.lines.push(line((from, ly), (to, ly), color, dash, 2.0));
            if runs[k].len() == 1 {
                out.lines.push(line((to, ly), (to, by), color, dash, 2.0));
            } else {
                ends.push(ly);
            }
        }
        if let [a, b] = ends[..] {
            // Along the joint, between the two instances' lanes.
            let x = joint(p) + if joint(p) > gutter { -6.0 } else { 6.0 };
            out.lines.push(line((x, a), (x, b), color, dash, 2.0));
        }
    }

    // The trace.
    if let Some(o) = overlay {
        let mut used: Vec<Vec<usize>> = (0..buses).map(|p| vec![0; instances(p)]).collect();
        let mut port_used: Vec<usize> = vec![0; g.nodes.len()];
        for (number, h, reply) in o.hops() {
            let color = if reply { "#2e7d32" } else { "#c62828" };
            let from = g.nodes.iter().position(|x| x.name == h.from);
            let to = g.nodes.iter().position(|x| x.name == h.to);
            let (Some(from), Some(to)) = (from, to) else {
                continue;
            };
            if let Some(net) = bus_of_network(&h.network) {
                let b = pos[net];
                let (Some(xa), Some(xb)) =
                    (attach_x(g, &out, from, net), attach_x(g, &out, to, net))
                else {
                    continue;
                };
                let (ia, ib) = (inst(from, b), inst(to, b));
                let (ya, yb) = (bus_y[b][ia], bus_y[b][ib]);
                let la = ya - 10.0 - used[b][ia] as f64 * TRACE_LANE;
                used[b][ia] += 1;
                let points = if ia == ib {
                    vec![(xa, ya), (xa, la), (xb, la), (xb, yb)]
                } else {
                    let lb = yb - 10.0 - used[b][ib] as f64 * TRACE_LANE;
                    used[b][ib] += 1;
                    let x = joint(b) + if joint(b) > gutter { -12.0 } else { 12.0 };
                    vec![(xa, ya), (xa, la), (x, la), (x, lb), (xb, lb), (xb, yb)]
                };
                let dir = if points[2].0 >= xa { 1.0 } else { -1.0 };
                out.arrows.push(Arrow {
                    points,
                    color,
                    number,
                    badge: (xa + dir * 14.0, la),
                });
            } else {
                // A vSwitch port: down from the bar to the VM, or up.
                let (vm, host) = match (g.inside(from), g.inside(to)) {
                    (Some(h2), _) if h2 == to => (from, to),
                    (_, Some(h2)) if h2 == from => (to, from),
                    _ => continue,
                };
                let (Some(bar), Some(&(px, py))) = (out.bars[host], out.nic_points[vm].first())
                else {
                    continue;
                };
                let x = px + 10.0 + port_used[vm] as f64 * 22.0;
                port_used[vm] += 1;
                let (y1, y2) = if from == host { (bar, py) } else { (py, bar) };
                out.arrows.push(Arrow {
                    points: vec![(x, y1), (x, y2)],
                    color,
                    number,
                    badge: (x + 10.0, (bar + py) / 2.0),
                });
            }
        }
    }

    // The panel on the right: VIPs, then the legend, then the trace's hops.
    let px = right + 40.0;
    let mut py = MARGIN + title_h;
    let mut panel: Vec<(String, bool, &'static str)> = Vec::new();
    if !g.vips.is_empty() {
        panel.push(("VIPs".into(), true, "#222"));
        for v in &g.vips {
            let by: Vec<&str> = v
                .announced_by
                .iter()
                .map(|&m| g.nodes[m].name.as_str())
                .collect();
            panel.push((format!("{}/32", v.address), true, "#a66f00"));
            panel.push((
                format!(
                    "  announced by {}",
                    if by.is_empty() {
                        "no Mux".to_string()
                    } else {
                        by.join(", ")
                    }
                ),
                false,
                "#222",
            ));
            for e in &v.entries {
                panel.push((format!("  {e}"), false, "#222"));
            }
        }
        panel.push((String::new(), false, "#222"));
    }
    panel.push(("Legend".into(), true, "#222"));
    for (kind, what) in [
        (EdgeKind::Bgp, "BGP session (with BFD)"),
        (EdgeKind::Vxlan, "VXLAN tunnel, Mux PA → host PA"),
        (EdgeKind::Control, "agent ⇄ network controller"),
    ] {
        panel.push((format!("      {what}"), false, style(kind, true).0));
    }
    panel.push(("      down".into(), false, style(EdgeKind::Bgp, false).0));
    if let Some(o) = overlay {
        panel.push((String::new(), false, "#222"));
        panel.push(("Trace".into(), true, "#222"));
        for (number, h, reply) in o.hops() {
            panel.push((
                format!("{number:>2} {} → {} on {}", h.from, h.to, h.network),
                false,
                if reply { "#2e7d32" } else { "#c62828" },
            ));
        }
    }
    let panel_w = panel
        .iter()
        .map(|(t, _, _)| text_w(t))
        .fold(200.0, f64::max)
        + 2.0 * PAD;
    let panel_h = panel.len() as f64 * LINE_H + 2.0 * PAD;
    out.cells.push(Rect::new(px, py, panel_w, panel_h));
    py += PAD;
    let legend_at = panel
        .iter()
        .position(|(t, _, _)| t == "Legend")
        .unwrap_or(0);
    for (k, (text, bold, color)) in panel.into_iter().enumerate() {
        if k > legend_at && k <= legend_at + 4 {
            let (c, dash) = if k == legend_at + 4 {
                style(EdgeKind::Bgp, false)
            } else {
                let kind = [EdgeKind::Bgp, EdgeKind::Vxlan, EdgeKind::Control][k - legend_at - 1];
                style(kind, true)
            };
            let ly = py + LINE_H / 2.0;
            out.lines
                .push(line((px + PAD, ly), (px + PAD + 30.0, ly), c, dash, 2.0));
        }
        if !text.is_empty() {
            out.labels.push(Label {
                rect: Rect::new(px + PAD, py, text_w(&text), FONT + 2.0),
                text,
                bold,
                color,
            });
        }
        py += LINE_H;
    }
    out.width = px + panel_w + MARGIN;
    out.height = y.max(py + PAD) + MARGIN;
    out
}

/// Where a node's line meets a bus (for a VM on a vSwitch, its host's uplink).
fn attach_x(g: &Graph, out: &Layout, n: usize, net: usize) -> Option<f64> {
    let n = g.inside(n).unwrap_or(n);
    g.nodes[n]
        .nics
        .iter()
        .zip(&out.nic_points[n])
        .find(|(c, _)| c.network == net && c.port_of.is_none())
        .map(|(_, p)| p.0)
}

/// Puts a measured box at `origin`, with its cells, text, VMs and NIC lines.
fn place(
    g: &Graph,
    n: usize,
    shape: &Shape,
    origin: (f64, f64),
    bus_at: &dyn Fn(usize, usize) -> f64,
    out: &mut Layout,
) {
    let (ox, oy) = origin;
    let rect = Rect::new(ox, oy, shape.w, shape.h);
    out.boxes[n] = rect;
    out.nic_points[n] = vec![(0.0, 0.0); g.nodes[n].nics.len()];
    for (i, cell, on_top) in &shape.cells {
        let r = Rect::new(ox + cell.x, oy + cell.y, cell.w, cell.h);
        out.cells.push(r);
        let label = &g.nodes[n].nics[*i].label;
        out.labels.push(Label {
            text: label.clone(),
            rect: Rect::new(r.x + 6.0, r.y + 2.0, text_w(label), FONT + 2.0),
            bold: false,
            color: "#333",
        });
        let cx = r.x + r.w / 2.0;
        let nic = &g.nodes[n].nics[*i];
        if nic.port_of.is_some() {
            out.nic_points[n][*i] = (cx, r.y);
            continue;
        }
        let by = bus_at(n, nic.network);
        let (edge_y, color) = if *on_top {
            (rect.y, "#555")
        } else {
            (rect.bottom(), "#555")
        };
        out.lines.push(line((cx, edge_y), (cx, by), color, "", 1.5));
        out.dots.push((cx, by));
        out.nic_points[n][*i] = (cx, edge_y);
    }
    for (text, x, y, bold) in &shape.texts {
        out.labels.push(Label {
            text: text.clone(),
            rect: Rect::new(ox + x, oy + y, text_w(text), FONT + 2.0),
            bold: *bold,
            color: "#222",
        });
    }
    if let Some(bar) = shape.bar {
        let y = oy + bar;
        out.bars[n] = Some(y);
        out.lines.push(line(
            (ox + PAD, y),
            (rect.right() - PAD, y),
            "#555",
            "",
            3.0,
        ));
        for (vm, vx, vy, grid_row, vshape) in &shape.vms {
            place(g, *vm, vshape, (ox + vx, oy + vy), bus_at, out);
            for (k, nic) in g.nodes[*vm].nics.iter().enumerate() {
                if nic.port_of != Some(n) {
                    continue;
                }
                let (px, py) = out.nic_points[*vm][k];
                if *grid_row == 0 {
                    out.lines.push(line((px, y), (px, py), "#555", "", 1.5));
                } else {
                    // Down the aisle left of the column, then in over the VM's cell.
                    let ax = ox + vx - shape.aisle + 3.0 + (grid_row - 1) as f64 * AISLE_LANE;
                    let turn = py - 6.0;
                    out.lines.push(line((ax, y), (ax, turn), "#555", "", 1.5));
                    out.lines
                        .push(line((ax, turn), (px, turn), "#555", "", 1.5));
                    out.lines.push(line((px, turn), (px, py), "#555", "", 1.5));
                }
            }
        }
    }
}

fn style(kind: EdgeKind, up: bool) -> (&'static str, &'static str) {
    let color = if up {
        match kind {
            EdgeKind::Bgp => "#1565c0",
            EdgeKind::Vxlan => "#e65100",
            EdgeKind::Control => "#6a1b9a",
        }
    } else {
        "#c62828"
    };
    let dash = match kind {
        EdgeKind::Bgp => "6 3",
        EdgeKind::Vxlan => "",
        EdgeKind::Control => "2 3",
    };
    (color, dash)
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The chart as an SVG document.
pub fn render(g: &Graph, overlay: Option<Overlay<'_>>) -> String {
    let l = layout(g, overlay);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="{FONT}">"#,
        w = l.width,
        h = l.height
    );
    let _ = writeln!(
        s,
        r##"<defs><marker id="arrow-red" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#c62828"/></marker><marker id="arrow-green" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#2e7d32"/></marker></defs>"##
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    for (y, x1, x2) in &l.buses {
        let _ = writeln!(
            s,
            r##"<line class="bus" x1="{x1:.1}" y1="{y:.1}" x2="{x2:.1}" y2="{y:.1}" stroke="#1a3d6d" stroke-width="5"/>"##
        );
    }
    for (n, r) in l.boxes.iter().enumerate() {
        let node = &g.nodes[n];
        let fill = match (node.kind, g.inside(n).is_some()) {
            ("host", _) => "#f3f6fa",
            ("router", _) => "#eef7ee",
            (_, true) => "#fffdf5",
            _ => "#ffffff",
        };
        let _ = writeln!(
            s,
            r##"<rect class="node" data-node="{}" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" rx="6" fill="{fill}" stroke="#555" stroke-width="1.2"/>"##,
            xml(&node.name),
            r.x,
            r.y,
            r.w,
            r.h
        );
    }
    for r in &l.cells {
        let _ = writeln!(
            s,
            r##"<rect class="cell" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" rx="3" fill="#f7f7f7" stroke="#999"/>"##,
            r.x, r.y, r.w, r.h
        );
    }
    for &Line {
        from: (x1, y1),
        to: (x2, y2),
        color,
        dash,
        width,
    } in &l.lines
    {
        let dash = if dash.is_empty() {
            String::new()
        } else {
            format!(r#" stroke-dasharray="{dash}""#)
        };
        let _ = writeln!(
            s,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{color}" stroke-width="{width}"{dash}/>"#
        );
    }
    for (x, y) in &l.dots {
        let _ = writeln!(
            s,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="#1a3d6d"/>"##
        );
    }
    for label in &l.labels {
        let weight = if label.bold {
            r#" font-weight="bold""#
        } else {
            ""
        };
        // SVG collapses leading spaces: indent by position instead.
        let text = label.text.trim_start();
        let indent = (label.text.len() - text.len()) as f64 * CHAR_W;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" fill="{}"{weight}>{}</text>"#,
            label.rect.x + indent,
            label.rect.y + FONT - 1.0,
            label.color,
            xml(text)
        );
    }
    for Arrow {
        points,
        color,
        number,
        badge: (bx, by),
    } in &l.arrows
    {
        let marker = if *color == "#c62828" {
            "arrow-red"
        } else {
            "arrow-green"
        };
        let pts: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline class="hop" points="{}" fill="none" stroke="{color}" stroke-width="2.5" marker-end="url(#{marker})"/>"#,
            pts.join(" ")
        );
        let _ = writeln!(
            s,
            r##"<circle cx="{bx:.1}" cy="{by:.1}" r="8" fill="{color}"/><text x="{bx:.1}" y="{:.1}" fill="#fff" font-size="10" text-anchor="middle" font-weight="bold">{number}</text>"##,
            by + 3.5
        );
    }
    s.push_str("</svg>\n");
    s
}
