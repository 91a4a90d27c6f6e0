//! A team of threads for the serving pass: one job at a time runs on every member (the
//! caller is member 0), each taking its own share. A decode step runs some 150 parallel
//! products of a few hundred microseconds each; members spin between them instead of going
//! to sleep and being woken, which costs more than a small product (rayon's pool spent a
//! fifth of a decode step in the scheduler). Members that find no job for a while park.

use std::{
    cell::UnsafeCell,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst},
        Arc, Mutex, OnceLock,
    },
    thread::Thread,
    time::{Duration, Instant},
};

/// How long an idle member spins before it parks.
const SPIN: Duration = Duration::from_micros(500);

type Job = *const (dyn Fn(usize, usize) + Sync);

struct State {
    generation: AtomicU64,
    /// The current job; written before `generation` moves, read after.
    job: UnsafeCell<Option<Job>>,
    pending: AtomicUsize,
    panicked: AtomicBool,
    sleeping: Vec<AtomicBool>,
}

// SAFETY: `job` is written only by the one running `Team::run` (under `lock`) before it
// publishes a new generation, and read by members only after they observe it; the closure it
// points to outlives every use because `run` waits for all members before returning.
unsafe impl Sync for State {}
unsafe impl Send for State {}

pub(crate) struct Team {
    size: usize,
    state: Arc<State>,
    threads: Vec<Thread>,
    lock: Mutex<()>,
}

impl Team {
    /// The process's team: as many members as cores (`RAYON_NUM_THREADS` caps it too).
    pub fn global() -> &'static Team {
        static TEAM: OnceLock<Team> = OnceLock::new();
        TEAM.get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let cap = std::env::var("RAYON_NUM_THREADS")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|&n: &usize| n > 0)
                .unwrap_or(cores);
            Team::new(cores.min(cap))
        })
    }

    fn new(size: usize) -> Team {
        let size = size.max(1);
        let state = Arc::new(State {
            generation: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            pending: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            sleeping: (0..size).map(|_| AtomicBool::new(false)).collect(),
        });
        let threads = (1..size)
            .map(|member| {
                let state = state.clone();
                std::thread::Builder::new()
                    .name(format!("openlora-{member}"))
                    .spawn(move || member_loop(&state, member, size))
                    .expect("spawning a serving thread")
                    .thread()
                    .clone()
            })
            .collect();
        Team {
            size,
            state,
            threads,
            lock: Mutex::new(()),
        }
    }

    /// Runs `job(member, members)` on every member and returns when all are done.
    pub fn run(&self, job: &(dyn Fn(usize, usize) + Sync)) {
        if self.size == 1 {
            job(0, 1);
            return;
        }
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let s = &self.state;
        // SAFETY: erases the borrow's lifetime; members use it only until `pending` reaches
        // zero, which this function waits for before returning.
        let erased: Job =
            unsafe { std::mem::transmute::<&(dyn Fn(usize, usize) + Sync), Job>(job) };
        // SAFETY: no member reads `job` until the generation below moves.
        unsafe { *s.job.get() = Some(erased) };
        s.pending.store(self.size - 1, SeqCst);
        s.generation.fetch_add(1, SeqCst);
        for (member, thread) in self.threads.iter().enumerate() {
            if s.sleeping[member + 1].load(SeqCst) {
                thread.unpark();
            }
        }
        let mine = catch_unwind(AssertUnwindSafe(|| job(0, self.size)));
        while s.pending.load(SeqCst) != 0 {
            std::hint::spin_loop();
        }
        let member_panicked = s.panicked.swap(false, SeqCst);
        if let Err(panic) = mine {
            std::panic::resume_unwind(panic);
        }
        if member_panicked {
            panic!("a serving thread panicked");
        }
    }
}

fn member_loop(s: &State, member: usize, size: usize) {
    let mut seen = 0u64;
    loop {
        let mut idle_since = Instant::now();
        let mut spins = 0u32;
        while s.generation.load(SeqCst) == seen {
            std::hint::spin_loop();
            spins += 1;
            if spins.is_multiple_of(1024) && idle_since.elapsed() > SPIN {
                s.sleeping[member].store(true, SeqCst);
                if s.generation.load(SeqCst) == seen {
                    std::thread::park_timeout(Duration::from_millis(50));
                }
                s.sleeping[member].store(false, SeqCst);
                idle_since = Instant::now();
            }
        }
        seen = s.generation.load(SeqCst);
        // SAFETY: published before the generation moved; alive until `pending` is zero.
        if let Some(job) = unsafe { *s.job.get() } {
            let job = unsafe { &*job };
            if catch_unwind(AssertUnwindSafe(|| job(member, size))).is_err() {
                s.panicked.store(true, SeqCst);
            }
        }
        s.pending.fetch_sub(1, SeqCst);
    }
}

impl Team {
    /// Splits `data` (items of `width` values) into one contiguous share per member, in
    /// steps of `step` items, and runs `f(share, first item)` on each member.
    pub fn for_shares(
        &self,
        data: &mut [f32],
        width: usize,
        step: usize,
        f: impl Fn(&mut [f32], usize) + Sync,
    ) {
        let n = data.len() / width;
        let members = self.size.min(n.div_ceil(step)).max(1);
        let mut rest = data;
        let mut parts = Vec::with_capacity(members);
        for member in 0..members {
            let range = share(n, step, member, members);
            let (mine, tail) = std::mem::take(&mut rest).split_at_mut(range.len() * width);
            parts.push(Mutex::new(Some((mine, range.start))));
            rest = tail;
        }
        let job = |member: usize, _: usize| {
            let part = parts.get(member).and_then(|p| p.lock().ok()?.take());
            if let Some((slice, first)) = part {
                if !slice.is_empty() {
                    f(slice, first);
                }
            }
        };
        if members == 1 {
            job(0, 1);
        } else {
            self.run(&job);
        }
    }
}

/// Member `member`'s share of `n` items out of `members`: a contiguous range, in steps of
/// `step` items.
pub(crate) fn share(
    n: usize,
    step: usize,
    member: usize,
    members: usize,
) -> std::ops::Range<usize> {
    let units = n.div_ceil(step);
    let (from, to) = (units * member / members, units * (member + 1) / members);
    (from * step).min(n)..(to * step).min(n)
}

/// A vector's base pointer, shared by team members that write disjoint elements of it.
pub(crate) struct Shared<T>(pub *mut T);
// SAFETY: members write disjoint elements (each user says why theirs are).
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    pub fn at(&self, i: usize) -> *mut T {
        self.0.wrapping_add(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_runs_its_share_once() {
        let team = Team::new(3);
        for round in 0..200 {
            let hits: Vec<AtomicUsize> = (0..101).map(|_| AtomicUsize::new(0)).collect();
            team.run(&|member, members| {
                for i in share(101, 4, member, members) {
                    hits[i].fetch_add(1, SeqCst);
                }
            });
            assert!(hits.iter().all(|h| h.load(SeqCst) == 1), "round {round}");
            if round == 100 {
                std::thread::sleep(Duration::from_millis(5)); // members park, then wake
            }
        }
    }

    #[test]
    fn a_panic_on_a_member_reaches_the_caller() {
        let team = Team::new(2);
        let result = catch_unwind(AssertUnwindSafe(|| {
            team.run(&|member, _| assert_ne!(member, 1, "member 1 fails"))
        }));
        assert!(result.is_err());
        team.run(&|_, _| {}); // and the team still works
    }
}
