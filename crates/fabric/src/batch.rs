//! A batch of frames in slots allocated once: what a [`crate::Link`] receives into.

/// Frames received, in slots allocated once.
#[derive(Debug, Clone)]
pub struct Batch {
    pub(crate) data: Vec<u8>,
    pub(crate) slot: usize,
    pub(crate) slots: usize,
    /// Where each frame received lies, in order.
    pub(crate) frames: Vec<Span>,
    /// The segments cut from super-frames (see [`crate::gso`]); its capacity is kept.
    pub(crate) spill: Vec<u8>,
    /// Frames larger than a slot, dropped.
    pub truncated: u64,
    /// Super-frames (a sender's kernel left segmentation to the device) that are not
    /// TCP over IPv4, or not well formed, dropped.
    pub offloaded: u64,
    /// TCP/IPv4 super-frames cut into segments.
    pub segmented: u64,
}

/// A frame of a batch: in a slot, or among the segments of a super-frame.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    pub(crate) spilled: bool,
    pub(crate) start: usize,
    pub(crate) len: usize,
}

impl Batch {
    /// Room for `frames` frames of up to `slot` bytes each.
    pub fn new(frames: usize, slot: usize) -> Batch {
        Batch {
            data: vec![0; frames * slot],
            slot,
            slots: frames,
            frames: Vec::with_capacity(frames),
            spill: Vec::new(),
            truncated: 0,
            offloaded: 0,
            segmented: 0,
        }
    }

    /// How many frames one receive reads at most (a super-frame's segments count as
    /// one).
    pub fn capacity(&self) -> usize {
        self.slots
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Forgets what the batch held.
    pub(crate) fn clear(&mut self) {
        self.frames.clear();
        self.spill.clear();
    }

    /// Frame `i` of those received.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let span = self.frames.get(i)?;
        let from = if span.spilled {
            &self.spill
        } else {
            &self.data
        };
        from.get(span.start..span.start + span.len)
    }

    /// The frames received, in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.frames.len()).filter_map(|i| self.get(i))
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
        // Three frames received: 3 bytes in slot 0, 8 (a full slot) in slot 1, and a
        // segment of 2 bytes in the spill.
        b.data[..3].copy_from_slice(&[1, 2, 3]);
        b.data[8..16].copy_from_slice(&[9; 8]);
        b.spill.extend_from_slice(&[0, 5, 6]);
        for (spilled, start, len) in [(false, 0, 3), (false, 8, 8), (true, 1, 2)] {
            b.frames.push(super::Span {
                spilled,
                start,
                len,
            });
        }
        assert!(!b.is_empty());
        assert_eq!(b.len(), 3);
        assert_eq!(b.get(0), Some(&[1, 2, 3][..]));
        assert_eq!(b.get(1), Some(&[9; 8][..]));
        assert_eq!(b.get(2), Some(&[5, 6][..]));
        assert_eq!(b.get(3), None, "nothing more was received");
        assert_eq!(b.iter().count(), 3);
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.get(0), None);
    }
}
