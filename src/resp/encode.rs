//! The command encoder: a RESP2 array of bulk strings, lengths written without `fmt`.

/// Exact number of bytes [`encode_command`] appends for `args`.
pub fn encoded_len(args: &[&[u8]]) -> usize {
    args.iter().fold(header_len(args.len()), |total, arg| {
        total
            .saturating_add(header_len(arg.len()))
            .saturating_add(arg.len())
            .saturating_add(2)
    })
}

/// Appends `args` as one RESP2 command: `*<n>\r\n` then `$<len>\r\n<arg>\r\n` per argument.
/// Reserves [`encoded_len`] once; allocates nothing when `out` already has that much spare
/// capacity.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.reserve(encoded_len(args));
    push_header(out, b'*', args.len());
    for arg in args {
        push_header(out, b'$', arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

fn header_len(n: usize) -> usize {
    1 + decimal_digits(n as u64) + 2
}

fn push_header(out: &mut Vec<u8>, kind: u8, n: usize) {
    let mut digits = DecimalBuf::new();
    out.push(kind);
    out.extend_from_slice(digits.format(n as u64));
    out.extend_from_slice(b"\r\n");
}

fn decimal_digits(mut n: u64) -> usize {
    let mut count = 1;
    while n >= 10 {
        n /= 10;
        count += 1;
    }
    count
}

/// A stack buffer that formats a `u64` in decimal without `fmt` or allocation.
#[derive(Clone, Copy, Debug, Default)]
pub struct DecimalBuf {
    bytes: [u8; 20],
}

impl DecimalBuf {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self { bytes: [0; 20] }
    }

    /// Writes `n` and returns its ASCII digits.
    pub fn format(&mut self, mut n: u64) -> &[u8] {
        let mut used = 0;
        for slot in self.bytes.iter_mut().rev() {
            *slot = b'0' + (n % 10) as u8;
            n /= 10;
            used += 1;
            if n == 0 {
                break;
            }
        }
        let start = self.bytes.len() - used;
        self.bytes.get(start..).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_decimal_extremes() {
        let mut buf = DecimalBuf::new();
        for n in [0, 9, 10, 99, 100, 12345, u64::MAX] {
            assert_eq!(buf.format(n), n.to_string().as_bytes());
            assert_eq!(decimal_digits(n), n.to_string().len());
        }
    }
}
