//! A fixed-capacity ring buffer of timeline entries with consecutive sequence numbers.
//!
//! Each room keeps its last `--history` entries here. Because seqs are consecutive, the entry
//! with seq `s` sits at a computable slot, so `since` and `before` lookups are O(1) to find.

/// A ring of at most `capacity` items; pushing into a full ring drops the oldest.
#[derive(Debug)]
pub struct Ring<T> {
    slots: Vec<T>,
    capacity: usize,
    /// Index in `slots` of the oldest item, once the ring is full.
    head: usize,
}

impl<T> Ring<T> {
    /// An empty ring. Slots are allocated as entries arrive, so an idle room costs nothing.
    pub fn new(capacity: usize) -> Self {
        Ring {
            slots: Vec::new(),
            capacity: capacity.max(1),
            head: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Appends `item`, returning the item it evicted, if the ring was full.
    pub fn push(&mut self, item: T) -> Option<T> {
        if self.slots.len() < self.capacity {
            if self.slots.len() == self.slots.capacity() {
                // Grow by doubling, but never past the capacity: a full ring has no slack.
                let more = self
                    .slots
                    .len()
                    .max(4)
                    .min(self.capacity - self.slots.len());
                self.slots.reserve_exact(more);
            }
            self.slots.push(item);
            None
        } else {
            let old = std::mem::replace(&mut self.slots[self.head], item);
            self.head = (self.head + 1) % self.capacity;
            Some(old)
        }
    }

    /// The item `i` places after the oldest one.
    pub fn get(&self, i: usize) -> Option<&T> {
        if i >= self.slots.len() {
            return None;
        }
        self.slots.get((self.head + i) % self.slots.len())
    }

    /// The item `i` places after the oldest one, to change it in place.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        if i >= self.slots.len() {
            return None;
        }
        let len = self.slots.len();
        self.slots.get_mut((self.head + i) % len)
    }

    /// Items from the `from`-th oldest up to (not including) the `to`-th, oldest first.
    pub fn range(&self, from: usize, to: usize) -> impl Iterator<Item = &T> {
        let to = to.min(self.len());
        (from.min(to)..to).filter_map(move |i| self.get(i))
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.range(0, self.len())
    }

    /// Drops every item, keeping the capacity.
    pub fn clear(&mut self) {
        self.slots = Vec::new();
        self.head = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_in_order() {
        let cases: &[(usize, usize, &[u32])] = &[
            (3, 0, &[]),
            (3, 2, &[0, 1]),
            (3, 3, &[0, 1, 2]),
            (3, 4, &[1, 2, 3]),
            (3, 10, &[7, 8, 9]),
            (1, 5, &[4]),
        ];
        for &(cap, pushes, want) in cases {
            let mut r = Ring::new(cap);
            for i in 0..pushes as u32 {
                r.push(i);
            }
            let got: Vec<u32> = r.iter().copied().collect();
            assert_eq!(got, want, "cap {cap} pushes {pushes}");
        }
    }

    #[test]
    fn push_returns_the_evicted_item() {
        let mut r = Ring::new(2);
        assert_eq!(r.push(1), None);
        assert_eq!(r.push(2), None);
        assert_eq!(r.push(3), Some(1));
        assert_eq!(r.get(0), Some(&2));
        assert_eq!(r.get(2), None);
    }

    #[test]
    fn range_clamps() {
        let mut r = Ring::new(4);
        for i in 0..6u32 {
            r.push(i);
        }
        assert_eq!(r.range(1, 3).copied().collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(r.range(3, 99).copied().collect::<Vec<_>>(), vec![5]);
        assert_eq!(r.range(5, 2).count(), 0);
    }
}
