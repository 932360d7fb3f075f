//! A generational arena: slots reused, keys never. A key names one entry
//! for as long as it lives; once it is removed, the key finds nothing, even
//! after its slot holds a newer entry.

/// A slot's index and the generation of the entry it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Key {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl Key {
    pub(crate) fn to_u64(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }
}

#[derive(Debug)]
struct Slot<T> {
    generation: u32,
    entry: Option<T>,
}

#[derive(Debug)]
pub(crate) struct Arena<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Arena<T> {
    pub(crate) fn new() -> Arena<T> {
        Arena {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The key a new entry will get (for entries that must know it).
    pub(crate) fn next_key(&self) -> Key {
        match self.free.last() {
            Some(&index) => Key {
                index,
                generation: self.slots[index as usize].generation,
            },
            None => Key {
                index: self.slots.len() as u32,
                generation: 0,
            },
        }
    }

    pub(crate) fn insert(&mut self, entry: T) -> Key {
        self.len += 1;
        match self.free.pop() {
            Some(index) => {
                let slot = &mut self.slots[index as usize];
                slot.entry = Some(entry);
                Key {
                    index,
                    generation: slot.generation,
                }
            }
            None => {
                let index = self.slots.len() as u32;
                self.slots.push(Slot {
                    generation: 0,
                    entry: Some(entry),
                });
                Key {
                    index,
                    generation: 0,
                }
            }
        }
    }

    pub(crate) fn get(&self, key: Key) -> Option<&T> {
        let slot = self.slots.get(key.index as usize)?;
        (slot.generation == key.generation)
            .then_some(slot.entry.as_ref())
            .flatten()
    }

    pub(crate) fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.generation == key.generation {
            slot.entry.as_mut()
        } else {
            None
        }
    }

    /// The key of the entry now in slot `index`, if any.
    pub(crate) fn key_at(&self, index: usize) -> Option<Key> {
        let slot = self.slots.get(index)?;
        slot.entry.as_ref().map(|_| Key {
            index: index as u32,
            generation: slot.generation,
        })
    }

    pub(crate) fn remove(&mut self, key: Key) -> Option<T> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        let entry = slot.entry.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(key.index);
        self.len -= 1;
        Some(entry)
    }

    pub(crate) fn keys(&self) -> Vec<Key> {
        (0..self.slots.len())
            .filter_map(|i| self.key_at(i))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_key_finds_nothing_even_when_its_slot_is_reused() {
        let mut a = Arena::new();
        let k1 = a.insert("one");
        assert_eq!(
            a.next_key(),
            Key {
                index: 1,
                generation: 0
            }
        );
        let k2 = a.insert("two");
        assert_eq!(a.remove(k1), Some("one"));
        assert_eq!(a.remove(k1), None);
        let k3 = a.insert("three");
        assert_eq!(k3.index, k1.index, "the slot is reused");
        assert_eq!(a.get(k1), None, "but not the key");
        assert_eq!(a.get(k3), Some(&"three"));
        assert_eq!(a.get(k2), Some(&"two"));
        assert_eq!(a.len(), 2);
        assert_eq!(a.keys(), vec![k3, k2]);
    }
}
