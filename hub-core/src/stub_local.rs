#[derive(Default)]
pub struct LocalSessions(std::sync::Mutex<std::collections::HashSet<String>>);
impl LocalSessions {
    pub fn insert(&self, k: &str, _v: &str) { self.0.lock().unwrap().insert(k.into()); }
    pub fn remove(&self, k: &str) -> bool { self.0.lock().unwrap().remove(k) }
    pub fn contains(&self, k: &str) -> bool { self.0.lock().unwrap().contains(k) }
    pub fn len(&self) -> usize { self.0.lock().unwrap().len() }
}
