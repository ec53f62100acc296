//! Boxes that go back to their thread when dropped, so that a keep-alive request allocates
//! nothing.
//!
//! The request path boxes the two heads it hands up and down its levels (the client's request
//! head and the upstream's response head): moved by value, a head of a few hundred bytes was
//! copied at every level (docs/benchmarks.md). A [`Recycled`] box is such a box whose memory,
//! once the value in it is dropped or taken out, waits in a small per-thread list for the next
//! head of its type instead of going back to the allocator. Each worker is one thread serving
//! its own connections (`workers.rs`), so a head is made and dropped on the same thread and the
//! lists stay warm; a box dropped on another thread simply joins that thread's list.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// Empty boxes kept per type and thread, at most: enough for every request in flight on a busy
/// worker to find one, little memory (a few hundred bytes each) after a burst has passed.
pub const SPARE_BOXES: usize = 256;

/// The spare boxes of one type on one thread.
pub type Spares<T> = RefCell<Vec<Box<MaybeUninit<T>>>>;

/// A type whose boxes are recycled: it names its per-thread list of spares. Implement it with
/// [`recycled!`](crate::recycled).
pub trait Recyclable: Sized + 'static {
    /// Runs `f` on this thread's spares; `None` while the thread is being torn down (its list
    /// already gone), when a box is simply allocated or freed.
    fn with_spares<R>(f: impl FnOnce(&Spares<Self>) -> R) -> Option<R>;
}

/// Gives `$t` a per-thread list of spare boxes, making it [`Recyclable`].
#[macro_export]
macro_rules! recycled {
    ($t:ty) => {
        impl $crate::recycle::Recyclable for $t {
            fn with_spares<R>(f: impl FnOnce(&$crate::recycle::Spares<Self>) -> R) -> Option<R> {
                thread_local! {
                    static SPARES: $crate::recycle::Spares<$t> = const { ::std::cell::RefCell::new(Vec::new()) };
                }
                SPARES.try_with(f).ok()
            }
        }
    };
}

/// An owned, boxed `T` whose memory is reused by the next `Recycled::new` on the thread that
/// drops it. Behaves as `Box<T>` otherwise.
pub struct Recycled<T: Recyclable> {
    /// Always points at an initialised `T` in memory allocated as a `Box<MaybeUninit<T>>`.
    ptr: NonNull<T>,
    /// Owns a `T`, as `Box<T>` does (for the drop checker and auto traits).
    _owns: PhantomData<T>,
}

impl<T: Recyclable> Recycled<T> {
    /// Moves `value` into a spare box of this thread, or a new one when none is left.
    #[inline(always)]
    pub fn new(value: T) -> Recycled<T> {
        let slot = take_spare::<T>().unwrap_or_else(Box::new_uninit);
        let boxed: Box<T> = Box::write(slot, value);
        Recycled {
            // Given back as a box by `into_inner` or `drop`.
            ptr: NonNull::from(Box::leak(boxed)),
            _owns: PhantomData,
        }
    }

    /// Takes the value out and keeps the box for the next one.
    #[inline(always)]
    pub fn into_inner(this: Recycled<T>) -> T {
        let this = ManuallyDrop::new(this);
        // SAFETY: `ptr` holds an initialised `T` that nothing else owns; `this` is not dropped,
        // so the value is read out exactly once and its memory then only given back.
        let value = unsafe { this.ptr.as_ptr().read() };
        // SAFETY: the memory came from a `Box<MaybeUninit<T>>` (`new`) and its value has just
        // been moved out, which is what `MaybeUninit` allows.
        give_back(unsafe { Box::from_raw(this.ptr.as_ptr().cast::<MaybeUninit<T>>()) });
        value
    }
}

impl<T: Recyclable> Drop for Recycled<T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: as in `into_inner`: the value is dropped once, here, and the emptied memory,
        // a `Box<MaybeUninit<T>>`'s, is handed on.
        let slot = unsafe {
            self.ptr.as_ptr().drop_in_place();
            Box::from_raw(self.ptr.as_ptr().cast::<MaybeUninit<T>>())
        };
        give_back(slot);
    }
}

impl<T: Recyclable> Deref for Recycled<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `ptr` points at an initialised `T` owned by `self`.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: Recyclable> DerefMut for Recycled<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes the borrow unique.
        unsafe { self.ptr.as_mut() }
    }
}

// SAFETY: `Recycled<T>` owns its `T` exactly as `Box<T>` does, so it may cross threads when `T`
// may; the spare lists it touches are the current thread's own.
unsafe impl<T: Recyclable + Send> Send for Recycled<T> {}
// SAFETY: shared access only ever gives out `&T`.
unsafe impl<T: Recyclable + Sync> Sync for Recycled<T> {}

impl<T: Recyclable + std::fmt::Debug> std::fmt::Debug for Recycled<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

#[inline(always)]
fn take_spare<T: Recyclable>() -> Option<Box<MaybeUninit<T>>> {
    // The list holds no values, so nothing runs while it is borrowed and the borrow cannot be
    // refused; `try_` only keeps that from ever being a panic. The list is gone only while the
    // thread ends. An allocation is the right answer either way.
    T::with_spares(|spares| spares.try_borrow_mut().ok()?.pop()).flatten()
}

#[inline(always)]
fn give_back<T: Recyclable>(slot: Box<MaybeUninit<T>>) {
    T::with_spares(|spares| {
        if let Ok(mut spares) = spares.try_borrow_mut()
            && spares.len() < SPARE_BOXES
        {
            spares.push(slot);
        }
        // Otherwise `slot` is freed here (or with the closure, if the thread's list is gone).
    });
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;

    /// Counts its drops through a shared counter.
    struct Tracked(Rc<std::cell::Cell<u32>>, [u8; 64]);
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }
    recycled!(Tracked);

    fn spares() -> usize {
        Tracked::with_spares(|s| s.borrow().len()).unwrap()
    }

    #[test]
    fn a_dropped_box_is_reused_by_the_next_value_and_each_value_is_dropped_once() {
        let drops = Rc::new(std::cell::Cell::new(0));
        let first = Recycled::new(Tracked(drops.clone(), [1; 64]));
        let address = &*first as *const Tracked;
        drop(first);
        assert_eq!((drops.get(), spares()), (1, 1));

        let mut second = Recycled::new(Tracked(drops.clone(), [2; 64]));
        assert_eq!(&*second as *const Tracked, address, "the spare box is reused");
        assert_eq!(spares(), 0);
        second.1[0] = 7;
        let taken = Recycled::into_inner(second);
        assert_eq!((taken.1[0], taken.1[1]), (7, 2));
        assert_eq!(drops.get(), 1, "taking the value out does not drop it");
        assert_eq!(spares(), 1, "but its box is kept");
        drop(taken);
        assert_eq!(drops.get(), 2);
    }

    #[test]
    fn at_most_spare_boxes_are_kept() {
        let drops = Rc::new(std::cell::Cell::new(0));
        let many: Vec<_> = (0..SPARE_BOXES + 10)
            .map(|_| Recycled::new(Tracked(drops.clone(), [0; 64])))
            .collect();
        drop(many);
        assert_eq!(drops.get() as usize, SPARE_BOXES + 10);
        assert_eq!(spares(), SPARE_BOXES);
    }

    #[test]
    fn a_box_dropped_on_another_thread_joins_that_threads_spares() {
        #[derive(Debug)]
        struct Head(#[allow(dead_code)] String);
        recycled!(Head);
        let head = Recycled::new(Head("on the first thread".into()));
        let there = std::thread::spawn(move || {
            drop(head);
            Head::with_spares(|s| s.borrow().len()).unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(there, 1);
        assert_eq!(Head::with_spares(|s| s.borrow().len()), Some(0));
    }
}
