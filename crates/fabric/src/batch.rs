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

#[cfg(test)]
mod tests {
    use super::Batch;

    #[test]
    fn a_batch_hands_out_only_what_it_holds() {
        let mut b = Batch::new(3, 8);
        assert_eq!(b.capacity(), 3);
        assert!(b.is_empty());
        assert_eq!(b.len(), 0);
        assert_eq!(b.get(0), None);
        // Two frames received: 3 bytes in slot 0, 8 (a full slot) in slot 1.
        b.data[..3].copy_from_slice(&[1, 2, 3]);
        b.data[8..16].copy_from_slice(&[9; 8]);
        b.lens[0] = 3;
        b.lens[1] = 8;
        b.count = 2;
        assert!(!b.is_empty());
        assert_eq!(b.len(), 2);
        assert_eq!(b.get(0), Some(&[1, 2, 3][..]));
        assert_eq!(b.get(1), Some(&[9; 8][..]));
        assert_eq!(b.get(2), None, "slot 2 holds nothing received");
        assert_eq!(b.iter().count(), 2);
    }
}
