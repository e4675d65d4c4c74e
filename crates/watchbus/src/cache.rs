//! Cache-line alignment for the state every publish writes.

use std::ops::Deref;

/// `T` starting a 64-byte cache line, and not sharing its last one.
///
/// For a lock and the fields written under it: put first in a `repr(C)`
/// struct, those fields share the lock's cache line, so a publish that
/// takes the lock moves one line between cores instead of several, and
/// nothing else (a reference count, another lock) bounces with it.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct CacheAligned<T>(pub(crate) T);

impl<T> Deref for CacheAligned<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}
