#!/bin/sh
# Makes the jielong spoken-digit set with espeak-ng: every digit "zero".."nine" said by several
# voices at several speeds and pitches, as 22.05 kHz mono 16-bit WAV files named
#   <digit>_<voice>_s<speed>_p<pitch>.wav        (e.g. 7_en-us_s130_p35.wav: "seven")
# so that the leading token of the name is the class label.
#
# usage: sh make.sh [OUTDIR] [full|small]
#   full  (default) 6 voices x 3 speeds x 3 pitches x 10 digits = 540 clips, about 10 seconds
#   small 2 voices x 1 speed x 1 pitch x 10 digits = 20 clips, for tests and CI
# Needs espeak-ng (Debian/Ubuntu: apt-get install espeak-ng). The same espeak-ng version makes
# the same files, so the set is reproducible.
set -eu

out=${1:-espeak-digits}
size=${2:-full}

if ! command -v espeak-ng >/dev/null 2>&1; then
    echo "make.sh: espeak-ng is not installed (apt-get install espeak-ng)" >&2
    exit 1
fi

case "$size" in
    full)
        voices="en-us en-gb en-gb-x-rp en-us+f2 en-us+m3 en-gb+f4"
        speeds="130 160 190"
        pitches="35 50 65"
        ;;
    small)
        voices="en-us en-gb+f4"
        speeds="160"
        pitches="50"
        ;;
    *)
        echo "make.sh: unknown size '$size' (use full or small)" >&2
        exit 2
        ;;
esac

mkdir -p "$out"
count=0
for voice in $voices; do
    for speed in $speeds; do
        for pitch in $pitches; do
            digit=0
            for word in zero one two three four five six seven eight nine; do
                file="$out/${digit}_${voice}_s${speed}_p${pitch}.wav"
                espeak-ng -v "$voice" -s "$speed" -p "$pitch" -w "$file" "$word"
                digit=$((digit + 1))
                count=$((count + 1))
            done
        done
    done
done
echo "make.sh: wrote $count clips to $out"
