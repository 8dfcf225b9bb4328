//! Kernel addresses to `function+0xoffset` through `/proc/kallsyms` (root sees real addresses;
//! others see zeros, and locations then stay hexadecimal).

/// A sorted symbol table.
#[derive(Debug, Default)]
pub struct Kallsyms {
    syms: Vec<(u64, String)>,
}

impl Kallsyms {
    /// Reads `/proc/kallsyms`; an unreadable or zeroed table resolves nothing.
    pub fn load() -> Kallsyms {
        let text = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
        Self::parse(&text)
    }

    /// Parses the `ADDR TYPE NAME [module]` lines of kallsyms.
    pub fn parse(text: &str) -> Kallsyms {
        let mut syms: Vec<(u64, String)> = text
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let addr = u64::from_str_radix(it.next()?, 16).ok()?;
                let kind = it.next()?;
                let name = it.next()?;
                (addr != 0 && matches!(kind, "t" | "T")).then(|| (addr, name.to_string()))
            })
            .collect();
        syms.sort_unstable();
        Kallsyms { syms }
    }

    /// `name+0xoff` for an address inside a known function, else the address in hex.
    pub fn resolve(&self, addr: u64) -> String {
        let i = self.syms.partition_point(|(a, _)| *a <= addr);
        match i.checked_sub(1).map(|i| &self.syms[i]) {
            Some((a, name)) if addr - a < 1 << 20 => format!("{name}+{:#x}", addr - a),
            _ => format!("{addr:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_inside_functions() {
        let k = Kallsyms::parse(
            "ffffffff81000000 T _text\nffffffff81000100 t nft_do_chain\nffffffff81000200 d data\n",
        );
        assert_eq!(k.resolve(0xffffffff81000120), "nft_do_chain+0x20");
        assert_eq!(k.resolve(0x10), "0x10");
    }
}
