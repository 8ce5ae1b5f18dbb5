//! An emulated Ethernet segment: a learning bridge with latency and bounded queues.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use strata_wire::EthernetAddress;

/// A port of a segment: where one NIC attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub usize);

/// How a segment behaves.
#[derive(Debug, Clone)]
pub struct SegmentConfig {
    /// One-way delay of every frame.
    pub latency: Duration,
    /// Frames in flight toward one port beyond which new frames to it are dropped.
    pub queue_limit: usize,
    /// Learned MAC addresses the bridge keeps; when full, unknown sources are not learned
    /// (their frames are flooded, never lost).
    pub mac_table_limit: usize,
    /// How long a learned MAC address stays without being seen.
    pub mac_aging: Duration,
    /// Whether to keep a copy of every frame for traces and pcap files.
    pub capture: bool,
}

impl Default for SegmentConfig {
    fn default() -> Self {
        SegmentConfig {
            latency: Duration::from_micros(50),
            queue_limit: 256,
            mac_table_limit: 4096,
            mac_aging: Duration::from_secs(300),
            capture: true,
        }
    }
}

/// Counters of one port, from the point of view of the attached NIC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCounters {
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub rx_frames: u64,
    pub rx_bytes: u64,
    /// Frames toward this port dropped because its queue was full.
    pub queue_drops: u64,
    /// Frames sent by this port that were too short to be Ethernet.
    pub runts: u64,
}

/// A frame as the segment saw it: when, from which port, to which ports.
#[derive(Debug, Clone)]
pub struct Captured {
    pub time: Duration,
    pub from: PortId,
    /// Ports the frame was queued toward (empty if it went nowhere).
    pub to: Vec<PortId>,
    pub bytes: Vec<u8>,
}

#[derive(Debug)]
struct InFlight {
    due: Duration,
    to: PortId,
    frame: Vec<u8>,
}

/// One emulated broadcast domain.
#[derive(Debug)]
pub struct Segment {
    name: String,
    config: SegmentConfig,
    counters: Vec<PortCounters>,
    in_flight_per_port: Vec<usize>,
    /// Ordered by due time: every frame gets the same latency and `send` is called with a
    /// non-decreasing `now`, so FIFO order is time order.
    queue: VecDeque<InFlight>,
    macs: HashMap<EthernetAddress, (PortId, Duration)>,
    capture: Vec<Captured>,
}

impl Segment {
    pub fn new(name: impl Into<String>, config: SegmentConfig) -> Segment {
        Segment {
            name: name.into(),
            config,
            counters: Vec::new(),
            in_flight_per_port: Vec::new(),
            queue: VecDeque::new(),
            macs: HashMap::new(),
            capture: Vec::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds a port and returns its id.
    pub fn attach(&mut self) -> PortId {
        self.counters.push(PortCounters::default());
        self.in_flight_per_port.push(0);
        PortId(self.counters.len() - 1)
    }

    pub fn ports(&self) -> usize {
        self.counters.len()
    }

    pub fn counters(&self, port: PortId) -> Option<&PortCounters> {
        self.counters.get(port.0)
    }

    /// Every frame captured so far, in the order the segment received them.
    pub fn captured(&self) -> &[Captured] {
        &self.capture
    }

    /// Takes a frame from the NIC on `from`, learns its source, and queues it toward the
    /// port of its destination (or every other port, for broadcast, multicast and unknown
    /// destinations).
    pub fn send(&mut self, now: Duration, from: PortId, frame: Vec<u8>) {
        let Some(counters) = self.counters.get_mut(from.0) else {
            return;
        };
        if frame.len() < strata_wire::ETHERNET_HEADER_LEN {
            counters.runts += 1;
            return;
        }
        counters.tx_frames += 1;
        counters.tx_bytes += frame.len() as u64;
        let dst = EthernetAddress::from_bytes(&frame[0..6]);
        let src = EthernetAddress::from_bytes(&frame[6..12]);
        self.learn(now, src, from);

        let known = if dst.is_unicast() {
            self.macs
                .get(&dst)
                .filter(|(_, seen)| now.saturating_sub(*seen) <= self.config.mac_aging)
                .map(|(port, _)| *port)
        } else {
            None
        };
        let mut to = Vec::new();
        match known {
            Some(port) if port == from => {}
            Some(port) => to.push(port),
            None => to.extend((0..self.ports()).map(PortId).filter(|p| *p != from)),
        }
        to.retain(|port| {
            if self.in_flight_per_port[port.0] >= self.config.queue_limit {
                self.counters[port.0].queue_drops += 1;
                false
            } else {
                true
            }
        });
        let due = now + self.config.latency;
        if self.config.capture {
            self.capture.push(Captured {
                time: now,
                from,
                to: to.clone(),
                bytes: frame.clone(),
            });
        }
        if let Some((last, rest)) = to.split_last() {
            for port in rest {
                self.enqueue(due, *port, frame.clone());
            }
            self.enqueue(due, *last, frame);
        }
    }

    fn enqueue(&mut self, due: Duration, to: PortId, frame: Vec<u8>) {
        self.in_flight_per_port[to.0] += 1;
        self.queue.push_back(InFlight { due, to, frame });
    }

    fn learn(&mut self, now: Duration, src: EthernetAddress, port: PortId) {
        if !src.is_unicast() {
            return;
        }
        if self.macs.len() >= self.config.mac_table_limit && !self.macs.contains_key(&src) {
            let aging = self.config.mac_aging;
            self.macs
                .retain(|_, (_, seen)| now.saturating_sub(*seen) <= aging);
            if self.macs.len() >= self.config.mac_table_limit {
                return;
            }
        }
        self.macs.insert(src, (port, now));
    }

    /// When the next frame is due, if any is in flight.
    pub fn poll_at(&self) -> Option<Duration> {
        self.queue.front().map(|f| f.due)
    }

    /// The next frame due at or before `now`, with the port it arrives on.
    pub fn poll_deliver(&mut self, now: Duration) -> Option<(PortId, Vec<u8>)> {
        if self.queue.front()?.due > now {
            return None;
        }
        let f = self.queue.pop_front()?;
        self.in_flight_per_port[f.to.0] -= 1;
        let c = &mut self.counters[f.to.0];
        c.rx_frames += 1;
        c.rx_bytes += f.frame.len() as u64;
        Some((f.to, f.frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
        let mut f = dst.to_vec();
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x08, 0x00]);
        f.resize(60, 0);
        f
    }

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
    const BCAST: [u8; 6] = [0xff; 6];

    #[test]
    fn floods_unknown_then_learns() {
        let mut s = Segment::new("t", SegmentConfig::default());
        let (pa, pb, pc) = (s.attach(), s.attach(), s.attach());
        let t0 = Duration::ZERO;
        s.send(t0, pa, frame(B, A));
        assert_eq!(s.poll_deliver(t0), None, "latency holds the frame");
        let t1 = t0 + SegmentConfig::default().latency;
        let got: Vec<_> = std::iter::from_fn(|| s.poll_deliver(t1))
            .map(|(p, _)| p)
            .collect();
        assert_eq!(got, vec![pb, pc], "unknown destination floods");
        s.send(t1, pb, frame(A, B));
        let t2 = t1 + SegmentConfig::default().latency;
        let got: Vec<_> = std::iter::from_fn(|| s.poll_deliver(t2))
            .map(|(p, _)| p)
            .collect();
        assert_eq!(got, vec![pa], "learned destination goes to one port");
        s.send(t2, pa, frame(BCAST, A));
        assert_eq!(s.captured().last().map(|c| c.to.len()), Some(2));
        assert_eq!(s.counters(pa).map(|c| c.tx_frames), Some(2));
    }

    #[test]
    fn bounded_queue_drops_and_counts() {
        let config = SegmentConfig {
            queue_limit: 2,
            ..SegmentConfig::default()
        };
        let mut s = Segment::new("t", config);
        let (pa, pb) = (s.attach(), s.attach());
        for _ in 0..5 {
            s.send(Duration::ZERO, pa, frame(B, A));
        }
        assert_eq!(s.counters(pb).map(|c| c.queue_drops), Some(3));
        let t = Duration::from_secs(1);
        assert_eq!(std::iter::from_fn(|| s.poll_deliver(t)).count(), 2);
        s.send(t, pa, vec![1, 2, 3]);
        assert_eq!(s.counters(pa).map(|c| c.runts), Some(1));
    }
}
