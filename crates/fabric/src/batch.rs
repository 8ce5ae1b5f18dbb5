//! A batch of frames in slots allocated once: what a [`crate::Link`] receives into.

/// Frames received or to be sent, in slots allocated once.
#[derive(Debug, Clone)]
pub struct Batch {
    pub(crate) data: Vec<u8>,
    pub(crate) slot: usize,
    pub(crate) lens: Vec<usize>,
    pub(crate) count: usize,
    /// Frames larger than a slot, dropped.
    pub truncated: u64,
    /// Frames a sender's kernel left to be segmented (GSO/TSO super-frames), dropped:
    /// turn segmentation offload off on the interfaces facing Strata.
    pub offloaded: u64,
}

impl Batch {
    /// Room for `frames` frames of up to `slot` bytes each.
    pub fn new(frames: usize, slot: usize) -> Batch {
        Batch {
            data: vec![0; frames * slot],
            slot,
            lens: vec![0; frames],
            count: 0,
            truncated: 0,
            offloaded: 0,
        }
    }

    /// How many frames it can hold.
    pub fn capacity(&self) -> usize {
        self.lens.len()
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Frame `i` of those received.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        (i < self.count).then(|| &self.data[i * self.slot..i * self.slot + self.lens[i]])
    }

    /// The frames received, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.count).filter_map(|i| self.get(i))
    }
}
