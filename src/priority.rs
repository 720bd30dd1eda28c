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

/// One thread at background priority that runs jobs in the order they come. It ends when its
/// handle is dropped; a job that panics is reported to its caller, and the thread goes on.
pub struct BackgroundThread {
    name: &'static str,
    jobs: std::sync::mpsc::Sender<Job>,
}

impl BackgroundThread {
    pub fn start(name: &'static str) -> std::io::Result<BackgroundThread> {
        let (jobs, incoming) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                background();
                while let Ok(job) = incoming.recv() {
                    // The job's result channel is dropped unanswered: its caller hears of it.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })?;
        Ok(BackgroundThread { name, jobs })
    }

    /// Runs `job` on the thread, after the jobs given before it.
    pub async fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, Gone> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(job());
        });
        self.jobs.send(job).map_err(|_| Gone(self.name))?;
        result.await.map_err(|_| Gone(self.name))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_in_order_at_background_priority_and_a_panic_is_reported() {
        let t = BackgroundThread::start("test-background").expect("start");
        let base = rustix::process::getpriority_process(None).unwrap_or(0);
        let nice = t
            .run(|| rustix::process::getpriority_process(Some(rustix::thread::gettid())).ok())
            .await
            .expect("run");
        assert_eq!(nice, Some(base + BACKGROUND_NICE));
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (a, b) = (order.clone(), order.clone());
        let first = t.run(move || a.lock().map(|mut v| v.push(1)).is_ok());
        let second = t.run(move || b.lock().map(|mut v| v.push(2)).is_ok());
        assert!(first.await.expect("first") && second.await.expect("second"));
        assert_eq!(*order.lock().expect("order"), vec![1, 2]);
        assert!(t.run(|| panic!("a bug in a job")).await.is_err());
        assert_eq!(t.run(|| 7).await.expect("the thread goes on"), 7);
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
