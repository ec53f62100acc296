//! The local-process spawner. (To be written.)
// TEMP stub until the helper's version is merged.
use std::path::PathBuf;
pub struct LocalSpawner;
impl LocalSpawner {
    pub fn new(_c: &config::LocalSpawnerConfig, _exe: PathBuf) -> Self { LocalSpawner }
    pub fn with_log_dir(self, _d: PathBuf) -> Self { self }
    pub fn describe(&self) -> String { String::new() }
}
impl super::Spawner for LocalSpawner {
    fn start(&self, _r: super::SpawnRequest, _p: crate::progress::ProgressSink) -> super::BoxFuture<'static, Result<super::Started, super::SpawnError>> { todo!() }
    fn stop(&self, _s: super::SpawnerState) -> super::BoxFuture<'static, Result<(), super::SpawnError>> { todo!() }
    fn poll(&self, _s: super::SpawnerState) -> super::BoxFuture<'static, super::PollStatus> { todo!() }
    fn kind(&self) -> &'static str { "local" }
}
