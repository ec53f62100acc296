//! Header lines rendered straight into an outgoing head, with no map or buffer of their own.

/// Something that writes header lines (`name: value\r\n` each) into a head being encoded.
pub trait HeaderLines {
    fn write_to(&self, out: &mut Vec<u8>);
}

/// No lines.
impl HeaderLines for () {
    fn write_to(&self, _: &mut Vec<u8>) {}
}

/// Lines already rendered.
impl HeaderLines for &[u8] {
    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

impl<T: HeaderLines> HeaderLines for Option<T> {
    fn write_to(&self, out: &mut Vec<u8>) {
        if let Some(lines) = self {
            lines.write_to(out);
        }
    }
}
