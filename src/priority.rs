//! Background work yields the CPU to scrapes. On a small node the sidecar's own background
//! threads (rendering changed series, compacting the journal) compete with a scrape for the
//! same cores; a scrape is what Prometheus times out on, while background work only needs to
//! finish eventually. Such threads run at a lower scheduling priority (a higher nice value):
//! when the cores are idle they run at full speed, when a scrape comes they give way.

/// The nice value of background threads: CFS gives a nice-10 thread about a tenth of the
/// CPU time of a nice-0 one when both want it.
const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's priority for the rest of its life (and of the threads it
/// starts: Linux copies the value to them). An unprivileged process cannot raise it back,
/// so call it only on threads that do background work alone. Where the system refuses
/// (a seccomp profile, another OS), the thread runs on at normal priority.
pub fn background() {
    #[cfg(target_os = "linux")]
    {
        let thread = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(thread), BACKGROUND_NICE) {
            tracing::debug!(error = %e, "a background thread keeps its priority");
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The thread is gone, or the job panicked on it.
#[derive(Debug, thiserror::Error)]
#[error("the {0} thread did not finish the job")]
pub struct Gone(&'static str);

/// Runs jobs at background priority: on one thread of its own, in the order they come. It
/// ends when its handle is dropped; a job that panics is reported to its caller, and the
/// thread goes on. If the thread cannot be started, jobs run on tokio's blocking pool at
/// normal priority instead: slower to give way to scrapes, but never left undone.
pub struct BackgroundThread {
    name: &'static str,
    jobs: Option<std::sync::mpsc::Sender<Job>>,
}

impl BackgroundThread {
    pub fn start(name: &'static str) -> BackgroundThread {
        let (jobs, incoming) = std::sync::mpsc::channel::<Job>();
        let started = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                background();
                while let Ok(job) = incoming.recv() {
                    // The job's result channel is dropped unanswered: its caller hears of it.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            });
        match started {
            Ok(_) => BackgroundThread {
                name,
                jobs: Some(jobs),
            },
            Err(e) => {
                tracing::warn!(thread = name, error = %e, "no background thread; its jobs run on the blocking pool at normal priority");
                BackgroundThread::on_blocking_pool(name)
            }
        }
    }

    fn on_blocking_pool(name: &'static str) -> BackgroundThread {
        BackgroundThread { name, jobs: None }
    }

    /// Runs `job` on the thread, after the jobs given before it.
    pub async fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, Gone> {
        let Some(jobs) = &self.jobs else {
            return tokio::task::spawn_blocking(job)
                .await
                .map_err(|_| Gone(self.name));
        };
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(job());
        });
        jobs.send(job).map_err(|_| Gone(self.name))?;
        result.await.map_err(|_| Gone(self.name))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_at_background_priority_and_a_panic_is_reported() {
        let base = rustix::process::getpriority_process(None).unwrap_or(0);
        let own_nice = || rustix::process::getpriority_process(Some(rustix::thread::gettid())).ok();
        let t = BackgroundThread::start("test-background");
        assert_eq!(
            t.run(own_nice).await.expect("run"),
            Some(base + BACKGROUND_NICE)
        );
        assert!(t.run(|| panic!("a bug in a job")).await.is_err());
        assert_eq!(t.run(|| 7).await.expect("the thread goes on"), 7);

        // Without a thread of its own, jobs still run, at the blocking pool's priority.
        let pool = BackgroundThread::on_blocking_pool("test-pool");
        assert_eq!(pool.run(own_nice).await.expect("run"), Some(base));
        assert!(pool.run(|| panic!("a bug in a job")).await.is_err());
        assert_eq!(pool.run(|| 7).await.expect("the pool goes on"), 7);
    }

    #[test]
    fn a_background_thread_gives_way_and_others_keep_their_priority() {
        let before = rustix::process::getpriority_process(None).unwrap_or(0);
        let lowered = std::thread::spawn(|| {
            super::background();
            let own = rustix::process::getpriority_process(Some(rustix::thread::gettid()));
            // Threads it starts inherit it.
            let child = std::thread::spawn(|| {
                rustix::process::getpriority_process(Some(rustix::thread::gettid()))
            })
            .join()
            .expect("child thread");
            (own, child)
        })
        .join()
        .expect("background thread");
        assert_eq!(lowered.0.ok(), Some(before + super::BACKGROUND_NICE));
        assert_eq!(lowered.1.ok(), Some(before + super::BACKGROUND_NICE));
        let here = rustix::process::getpriority_process(Some(rustix::thread::gettid()));
        assert_eq!(here.ok(), Some(before), "the calling thread is untouched");
    }
}
