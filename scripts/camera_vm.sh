#!/usr/bin/env bash
# Tests webcam capture through a real V4L2 driver on a machine without a camera: boots
# Debian's kernel in a small VM (qemu, emulated: it boots in about 5 s) whose initramfs holds the `vivid` virtual
# camera driver and the `camera_check` example. camera_check lists the cameras, opens vivid
# through nokhwa in the format closest to 320x240 at 15 fps, captures 30 frames through
# Squadlink's `Camera` source and codes them with VP8; this script checks its JSON summary.
# Exit status: 0 passed, 1 failed. (qemu's TCG emulation, not KVM: this machine is itself a
# VM, and a nested KVM guest hung in its firmware here.)
# Usage: scripts/camera_vm.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
# The VM: qemu, Debian's kernel (it carries vivid), a static busybox, cpio for the initramfs.
scripts/setup.sh test qemu-system-x86 linux-image-amd64 busybox-static cpio
source scripts/env.sh

kernel=$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n1)
if [ -z "$kernel" ]; then
  echo "camera VM: no kernel in /boot (scripts/setup.sh installs linux-image-amd64)"; exit 1
fi
version=${kernel#/boot/vmlinuz-}
modules=/lib/modules/$version/kernel
if [ ! -f "$modules/drivers/media/test-drivers/vivid/vivid.ko" ] && [ ! -f "$modules/drivers/media/test-drivers/vivid/vivid.ko.xz" ]; then
  echo "camera VM: $version has no vivid module"; exit 1
fi

work=${1:-$CARGO_TARGET_DIR/camera-vm}
rm -rf "$work" && mkdir -p "$work/root"
echo "== building camera_check (feature webcam)"
cargo build --locked -q -p squadlink-bench --features webcam --bin camera_check
bin=$CARGO_TARGET_DIR/debug/camera_check

echo "== making the initramfs (busybox, vivid and its dependencies, camera_check and its libraries)"
root=$work/root
mkdir -p "$root"/{bin,proc,sys,dev,tmp,modules}
cp /bin/busybox "$root/bin/busybox"
cp "$bin" "$root/camera_check"
# The program's shared libraries, at the paths the dynamic loader looks for them.
ldd "$bin" | awk '/=> \// { print $3 } /^[ \t]*\/[^ ]+ \(/ { print $1 }' | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
# vivid and what it needs, loaded in dependency order.
order=(rc-core cec mc videodev videobuf2-common videobuf2-v4l2 videobuf2-memops
  videobuf2-vmalloc videobuf2-dma-contig v4l2-dv-timings v4l2-tpg vivid)
for m in "${order[@]}"; do
  f=$(find "$modules/drivers/media" -name "$m.ko*" | head -n1)
  [ -n "$f" ] || { echo "camera VM: module $m not found"; exit 1; }
  case $f in
    *.xz) xz -dc "$f" >"$root/modules/$m.ko" ;;
    *.zst) zstd -dcq "$f" >"$root/modules/$m.ko" ;;
    *) cp "$f" "$root/modules/$m.ko" ;;
  esac
done
cat >"$root/init" <<EOF
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
for m in ${order[*]}; do
  case \$m in
    vivid) /bin/busybox insmod /modules/vivid.ko n_devs=1 node_types=0x1 || echo "insmod vivid failed" ;;
    *) /bin/busybox insmod /modules/\$m.ko || echo "insmod \$m failed" ;;
  esac
done
/bin/busybox ls /dev/video* 2>&1
HOME=/tmp /camera_check --frames 30
echo "CAMERA_CHECK_EXIT \$?"
/bin/busybox poweroff -f
EOF
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.gz"

echo "== booting $version (emulated)"
set +e
timeout 300 qemu-system-x86_64 -accel tcg -cpu max -m 1024 -smp 1 -nographic -no-reboot \
  -kernel "$kernel" -initrd "$work/initrd.gz" \
  -append "console=ttyS0 panic=-1 quiet loglevel=3" >"$work/console.log" 2>&1
status=$?
set -e
line=$(grep -a '^CAMERA_CHECK {' "$work/console.log" | tail -n1 | tr -d '\r')
if [ -z "$line" ]; then
  echo "camera VM: no summary (qemu exit $status); the console said:"
  tail -n 30 "$work/console.log"
  exit 1
fi
echo "${line#CAMERA_CHECK }"
/usr/bin/python3 - "${line#CAMERA_CHECK }" <<'PY'
import json, sys
s = json.loads(sys.argv[1])
checks = [
    ("vivid is listed", any("vivid" in c.lower() or "video" in c.lower() for c in s["cameras"])),
    ("opened", bool(s["opened"])),
    ("30 frames captured", s["frames"] >= 30),
    ("frames change (the test pattern moves)", s["distinct_frames"] >= 2),
    ("a real size", s["width"] > 0 and s["height"] > 0),
    ("VP8 codes them (PSNR >= 30 dB)", s["vp8_psnr_min_db"] >= 30),
    ("no error", s["error"] is None),
]
ok = True
for name, good in checks:
    print(f"camera VM: {name}: {'ok' if good else 'FAILED'}")
    ok &= good
sys.exit(0 if ok else 1)
PY
