//! One frame's unwind rule: how to find the caller's stack pointer, return address and
//! frame pointer from this frame's registers, derived from the CFI row of an address and
//! packed into eight bytes for the cache.
//!
//! Only rows of the common shape become rules: the CFA (the caller's stack pointer) is the
//! stack or frame pointer plus an offset, the return address is saved at a fixed offset from
//! the CFA (aarch64: or still in the link register, in the first frame), and the frame
//! pointer is saved at a fixed offset or not touched. Anything else — CFA expressions
//! (signal frames, PLT stubs), registers restored from other registers, an address outside
//! every object's tables — is [`Rule::UNKNOWN`]: the unwind fails and the caller uses
//! DWARF, which knows every rule. Never a guess. An address inside an object's tables but
//! without an FDE (entry code written without CFI, as musl's `_start` and `__clone`) ends
//! the stack before it, as it ends DWARF unwinders ([`Rule::NO_CFI`]).

use super::modules::{Bytes, Code};
use gimli::{
    CfaRule, EhFrame, Register, RegisterRule, UnwindContext, UnwindContextStorage, UnwindSection,
    UnwindTableRow,
};

/// gimli's working memory for evaluating a CFI program, with fixed storage (no allocation).
pub(super) type Context = UnwindContext<usize, Storage>;

/// In-line storage: register rules per row (an x86_64 or aarch64 frame saves at most about
/// twenty registers; more fails the row, so DWARF takes the stack), and the depth of
/// `DW_CFA_remember_state`.
pub(super) struct Storage;

impl UnwindContextStorage<usize> for Storage {
    type Rules = [(Register, RegisterRule<usize>); 48];
    type Stack = [UnwindTableRow<usize, Self>; 4];
}

/// A fresh context, on the heap (a few kilobytes).
pub(super) fn new_context() -> Box<Context> {
    Box::new(Context::new_in())
}

#[cfg(target_arch = "x86_64")]
mod registers {
    use gimli::{Register, X86_64};
    pub(super) const SP: Register = X86_64::RSP;
    pub(super) const FP: Register = X86_64::RBP;
    pub(super) const RA: Register = X86_64::RA;
    /// Whether the return address may still be in a register in the first frame.
    pub(super) const LINK_REGISTER: bool = false;
}

#[cfg(target_arch = "aarch64")]
mod registers {
    use gimli::{AArch64, Register};
    pub(super) const SP: Register = AArch64::SP;
    pub(super) const FP: Register = AArch64::X29;
    pub(super) const RA: Register = AArch64::X30;
    /// Whether the return address may still be in a register in the first frame.
    pub(super) const LINK_REGISTER: bool = true;
}

/// A frame's rule, packed into one word so that a cache hit is one load and each field a
/// shift: from the low bits, the flags ([`FRAME`], [`END`], [`CFA_FROM_FP`],
/// [`FP_UNDEFINED`], [`MAY_UNLOAD`], [`NO_CFI`]; 8 bits); where the caller's frame pointer
/// is saved, in 8-byte words from the CFA, 0 for not saved (`i8`); where the return address
/// is saved, in words from the CFA, 0 for in the link register (`i16`); and the CFA's
/// offset from its base register, in bytes (`i32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Rule(u64);

/// A rule to apply (without it and [`END`]: unknown).
const FRAME: u8 = 1;
/// The outermost frame: its return address is undefined.
const END: u8 = 2;
/// The CFA is the frame pointer plus the offset (else the stack pointer).
const CFA_FROM_FP: u8 = 4;
/// The caller's frame pointer cannot be recovered.
const FP_UNDEFINED: u8 = 8;
/// The address lies in an object that may be unloaded (see `modules`): the rule holds only
/// while the loader's counters have not moved.
const MAY_UNLOAD: u8 = 16;
/// With [`END`]: the address is in code without CFI, whose frame is not one of the stack's.
const NO_CFI: u8 = 32;

impl Rule {
    /// No exact rule.
    pub(super) const UNKNOWN: Rule = Rule::pack(0, 0, 0, 0);

    /// The outermost frame.
    pub(super) const END: Rule = Rule::pack(0, 0, 0, END);

    /// Past the outermost frame: code of a loaded object without CFI (entry code written
    /// without CFI directives, as musl's `_start` and `__clone`). DWARF unwinders stop
    /// there without reporting the frame (LLVM's libunwind, musl's), and so does the walk.
    pub(super) const NO_CFI: Rule = Rule::pack(0, 0, 0, END | NO_CFI);

    /// The rule of these fields (see [`Rule`]).
    const fn pack(cfa_offset: i32, ra_words: i16, fp_words: i8, flags: u8) -> Rule {
        Rule(
            (cfa_offset as u32 as u64) << 32
                | (ra_words as u16 as u64) << 16
                | (fp_words as u8 as u64) << 8
                | flags as u64,
        )
    }

    #[inline(always)]
    fn flags(self) -> u8 {
        self.0 as u8
    }

    /// The same rule with `flags` added.
    fn with(self, flags: u8) -> Rule {
        Rule(self.0 | u64::from(flags))
    }

    /// Whether the rule may stop holding when an object is unloaded: true for the rules of
    /// objects that may be unloaded, and for [`Rule::UNKNOWN`] (a later load may cover the
    /// address).
    #[inline]
    pub(super) fn may_go_stale(self) -> bool {
        self.flags() & MAY_UNLOAD != 0 || self.flags() & (FRAME | END) == 0
    }

    /// Whether the rule gives the caller's registers (else: the end, or unknown).
    #[inline(always)]
    pub(super) fn is_frame(self) -> bool {
        self.flags() & FRAME != 0
    }

    /// Whether this is the outermost frame.
    #[inline(always)]
    pub(super) fn is_end(self) -> bool {
        self.flags() & END != 0
    }

    /// Whether the address is in code without CFI (see [`Rule::NO_CFI`]).
    #[inline(always)]
    pub(super) fn is_without_cfi(self) -> bool {
        self.flags() & NO_CFI != 0
    }

    /// The CFA's base register is the frame pointer (else the stack pointer).
    #[inline(always)]
    pub(super) fn cfa_from_fp(self) -> bool {
        self.flags() & CFA_FROM_FP != 0
    }

    /// Bytes from the base register to the CFA.
    #[inline(always)]
    pub(super) fn cfa_offset(self) -> u64 {
        // Sign-extended, as the `i32` it is.
        ((self.0 as i64) >> 32) as u64
    }

    /// Bytes from the CFA to the saved return address; 0: in the link register.
    #[inline(always)]
    pub(super) fn ra_offset(self) -> i64 {
        i64::from((self.0 >> 16) as u16 as i16) * 8
    }

    /// Bytes from the CFA to the saved frame pointer; 0: not saved.
    #[inline(always)]
    pub(super) fn fp_offset(self) -> i64 {
        i64::from((self.0 >> 8) as u8 as i8) * 8
    }

    /// The caller's frame pointer cannot be recovered.
    #[inline(always)]
    pub(super) fn fp_undefined(self) -> bool {
        self.flags() & FP_UNDEFINED != 0
    }
}

/// The rule for `lookup` (a PC, or a return address minus one) in `code`.
pub(super) fn rule_for(code: &Code, lookup: u64, context: &mut Context) -> Rule {
    let rule = row_rule(code, lookup, context).unwrap_or(Rule::UNKNOWN);
    if code.permanent {
        rule
    } else {
        rule.with(MAY_UNLOAD)
    }
}

fn row_rule(code: &Code, lookup: u64, context: &mut Context) -> Option<Rule> {
    let svma = lookup.checked_sub(code.bias)?;
    let table = code.eh_frame_hdr.table()?;
    let fde = match table.fde_for_address(
        &code.eh_frame,
        &code.bases,
        svma,
        EhFrame::<Bytes>::cie_from_offset,
    ) {
        Ok(fde) => fde,
        // Code of a loaded object that has no CFI at all ends the stack (see
        // `Rule::NO_CFI`). Code outside every object (JIT code) still fails the capture.
        Err(gimli::Error::NoUnwindInfoForAddress) => return Some(Rule::NO_CFI),
        Err(_) => return None,
    };
    if fde.is_signal_trampoline() {
        return None; // the interrupted frame is not a call: DWARF handles it
    }
    let row = fde
        .unwind_info_for_address(&code.eh_frame, &code.bases, context, svma)
        .ok()?;
    translate(row.cfa(), |register| row.register(register))
}

/// The rule for one CFI row, given its CFA rule and its register rules; `None` for a row
/// of any other shape.
fn translate(
    cfa: &CfaRule<usize>,
    register: impl Fn(Register) -> Option<RegisterRule<usize>>,
) -> Option<Rule> {
    use registers::{FP, LINK_REGISTER, RA, SP};
    // The outermost frame (thread entry code) may have any CFA: it is not applied.
    let ra = register(RA);
    if ra == Some(RegisterRule::Undefined) {
        return Some(Rule::END);
    }
    let CfaRule::RegisterAndOffset {
        register: base,
        offset,
    } = *cfa
    else {
        return None;
    };
    let mut flags = FRAME;
    if base == FP {
        flags |= CFA_FROM_FP;
    } else if base != SP {
        return None;
    }
    if offset <= 0 || offset % 8 != 0 {
        return None;
    }
    let cfa_offset = i32::try_from(offset).ok()?;
    let ra_words = match ra {
        Some(RegisterRule::Offset(at)) => words::<i16>(at)?,
        None | Some(RegisterRule::SameValue) if LINK_REGISTER => 0,
        _ => return None,
    };
    let fp_words = match register(FP) {
        None | Some(RegisterRule::SameValue) => 0,
        Some(RegisterRule::Undefined) => {
            flags |= FP_UNDEFINED;
            0
        }
        Some(RegisterRule::Offset(at)) => words::<i8>(at)?,
        _ => return None,
    };
    Some(Rule::pack(cfa_offset, ra_words, fp_words, flags))
}

/// A non-zero offset from the CFA in whole words, if it fits `T`.
fn words<T: TryFrom<i64>>(offset: i64) -> Option<T> {
    (offset != 0 && offset % 8 == 0)
        .then(|| T::try_from(offset / 8).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::registers::{FP, RA, SP};
    use super::*;

    fn rule(
        cfa: CfaRule<usize>,
        ra: Option<RegisterRule<usize>>,
        fp: Option<RegisterRule<usize>>,
    ) -> Option<Rule> {
        translate(&cfa, |r| {
            if r == RA {
                ra.clone()
            } else if r == FP {
                fp.clone()
            } else {
                None
            }
        })
    }

    fn at(register: Register, offset: i64) -> CfaRule<usize> {
        CfaRule::RegisterAndOffset { register, offset }
    }

    #[test]
    fn the_common_shapes_round_trip() {
        let r = rule(at(SP, 48), Some(RegisterRule::Offset(-8)), None).expect("a rule");
        assert!(r.is_frame() && !r.is_end() && !r.cfa_from_fp() && !r.fp_undefined());
        assert_eq!((r.cfa_offset(), r.ra_offset(), r.fp_offset()), (48, -8, 0));

        let r = rule(
            at(FP, 16),
            Some(RegisterRule::Offset(-8)),
            Some(RegisterRule::Offset(-16)),
        )
        .expect("a rule");
        assert!(r.is_frame() && r.cfa_from_fp());
        assert_eq!((r.cfa_offset(), r.ra_offset(), r.fp_offset()), (16, -8, -16));

        let r = rule(at(SP, 32), Some(RegisterRule::Offset(-8)), Some(RegisterRule::Undefined))
            .expect("a rule");
        assert!(r.is_frame() && r.fp_undefined() && r.fp_offset() == 0);

        // The end, whatever the CFA (aarch64's thread entry has CFA = sp + 0).
        assert!(rule(at(SP, 0), Some(RegisterRule::Undefined), None).is_some_and(Rule::is_end));
        let r = rule(at(SP, 8), Some(RegisterRule::Undefined), None).expect("the end");
        assert!(r.is_end() && !r.is_frame());
        assert!(!r.may_go_stale());
        let unloadable = r.with(MAY_UNLOAD);
        assert!(unloadable.is_end() && unloadable.may_go_stale());
        assert!(!Rule::UNKNOWN.is_frame() && !Rule::UNKNOWN.is_end());
        assert!(Rule::UNKNOWN.may_go_stale());
        // Code without CFI: the end, its frame not one of the stack's.
        assert!(r.is_end() && !r.is_without_cfi());
        let none = Rule::NO_CFI;
        assert!(none.is_end() && none.is_without_cfi() && !none.is_frame());
        assert!(!none.may_go_stale());
        assert_eq!(std::mem::size_of::<Rule>(), 8);
    }

    #[test]
    fn fields_keep_their_signs_and_extremes() {
        for (cfa, ra, fp) in [(i32::MAX, i16::MIN, i8::MIN), (8, i16::MAX, i8::MAX), (16, -1, -1)] {
            let r = Rule::pack(cfa, ra, fp, FRAME | FP_UNDEFINED);
            assert_eq!(r.cfa_offset(), cfa as u64);
            assert_eq!(r.ra_offset(), i64::from(ra) * 8);
            assert_eq!(r.fp_offset(), i64::from(fp) * 8);
            assert!(r.is_frame() && r.fp_undefined() && !r.cfa_from_fp() && !r.is_end());
        }
    }

    #[test]
    fn other_shapes_are_refused() {
        let ra = || Some(RegisterRule::Offset(-8));
        assert_eq!(rule(at(Register(0x7fff), 16), ra(), None), None, "other base");
        assert_eq!(rule(at(SP, 0), ra(), None), None, "no offset");
        assert_eq!(rule(at(SP, 12), ra(), None), None, "not whole words");
        assert_eq!(rule(at(SP, 1 << 40), ra(), None), None, "too far");
        assert_eq!(
            rule(at(SP, 16), Some(RegisterRule::Register(FP)), None),
            None,
            "return address in another register"
        );
        assert_eq!(
            rule(at(SP, 16), ra(), Some(RegisterRule::ValOffset(-16))),
            None,
            "frame pointer computed"
        );
        assert_eq!(
            rule(at(SP, 16), ra(), Some(RegisterRule::Offset(-8 * 1000))),
            None,
            "frame pointer saved too far away"
        );
        let expression = CfaRule::Expression(gimli::UnwindExpression {
            offset: 0,
            length: 0,
        });
        assert_eq!(rule(expression, ra(), None), None, "CFA expression");
    }
}
