/* Wine 8 (Debian 12) lacks bcryptprimitives.dll, which Rust's std (1.78+) imports for
 * ProcessPrng. This stand-in forwards to RtlGenRandom (advapi32's SystemFunction036).
 * Test-only: never shipped. */
#include <windows.h>
#define SystemFunction036 NTAPI SystemFunction036
#include <ntsecapi.h>
#undef SystemFunction036

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!RtlGenRandom(data, chunk)) return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
