//! The threads of the simulation (a partnership's setup, a jobseeker's
//! journey, a placement), their agendas of timed steps, and the priority
//! queue keyed by submission time that interleaves them.

use std::cmp::{Ordering, Reverse};
use std::collections::VecDeque;

use super::Simulator;
use super::calendar::Time;
use super::emission::Draft;
use super::journeys::Journey;
use super::partnerships::SetupStep;
use super::placements::Placement;

pub(super) type Agenda<T> = VecDeque<(Time, T)>;

pub(super) fn agenda<T>(mut steps: Vec<(Time, T)>) -> Agenda<T> {
    // Stable, so that steps at the same second keep their lifecycle order.
    steps.sort_by_key(|(at, _)| *at);
    steps.into()
}

pub(super) enum Thread {
    Setup(usize, Agenda<SetupStep>),
    Journey(Journey),
    Placement(Placement),
}

impl Thread {
    fn next_time(&self) -> Option<Time> {
        match self {
            Self::Setup(_, agenda) => agenda.front().map(|s| s.0),
            Self::Journey(j) => j.agenda.front().map(|s| s.0),
            Self::Placement(p) => p.agenda.front().map(|s| s.0),
        }
    }
}

pub(super) enum Task {
    Thread(Box<Thread>),
    Arrival(usize),
    /// A leaf event reported after its effective time.
    Late(Box<(Time, Draft)>),
    Retraction(Box<Draft>),
}

/// A task in the queue. The key packs the submission time (upper 32 bits:
/// seconds, enough for a century) and a push counter (lower 32 bits), so
/// that ties keep push order and the heap compares one integer.
pub(super) struct Entry {
    key: u64,
    pub(super) task: Task,
}

impl Entry {
    pub(super) fn at(&self) -> Time {
        (self.key >> 32) as Time
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}

impl Simulator {
    pub(super) fn push(&mut self, at: Time, task: Task) {
        self.seq = self.seq.wrapping_add(1);
        let at = u64::try_from(at).unwrap_or(0).min(u64::from(u32::MAX));
        self.queue.push(Reverse(Entry {
            key: at << 32 | u64::from(self.seq),
            task,
        }));
    }

    pub(super) fn push_thread(&mut self, thread: Thread) {
        if let Some(at) = thread.next_time()
            && at < self.end
        {
            self.push(at, Task::Thread(Box::new(thread)));
        }
    }

    pub(super) fn run(&mut self, at: Time, task: Task) {
        match task {
            Task::Arrival(p) => self.arrival(p, at),
            Task::Late(late) => {
                let (time, draft) = *late;
                self.commit(time, at, draft);
            }
            Task::Retraction(draft) => self.commit(at, at, *draft),
            Task::Thread(mut thread) => {
                match thread.as_mut() {
                    Thread::Setup(p, agenda) => {
                        if let Some((time, step)) = agenda.pop_front() {
                            let p = *p;
                            self.setup_step(p, time, step);
                        }
                    }
                    Thread::Journey(journey) => {
                        if let Some((time, step)) = journey.agenda.pop_front() {
                            self.journey_step(journey, time, step);
                        }
                    }
                    Thread::Placement(placement) => {
                        if let Some((time, step)) = placement.agenda.pop_front() {
                            self.placement_step(placement, time, step);
                        }
                    }
                }
                if let Some(next) = thread.next_time()
                    && next < self.end
                {
                    self.push(next, Task::Thread(thread));
                }
            }
        }
    }
}
