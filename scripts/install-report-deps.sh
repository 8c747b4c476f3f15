#!/usr/bin/env bash
# Installs what the report tests use beside the build: pdflatex with booktabs, siunitx and
# threeparttable (the generated tables compile in a real document), poppler's pdftoppm (a
# page rendered to PNG), and Chromium (report.html rendered headless). Debian packages,
# without their recommends. Idempotent: does nothing when every tool and package is there.
set -euo pipefail
have_tex() {
  command -v pdflatex >/dev/null 2>&1 &&
    kpsewhich siunitx.sty threeparttable.sty booktabs.sty >/dev/null 2>&1 &&
    [ "$(kpsewhich siunitx.sty threeparttable.sty booktabs.sty | wc -l)" -eq 3 ]
}
need=()
have_tex || need+=(texlive-latex-base texlive-latex-recommended texlive-latex-extra texlive-science)
command -v pdftoppm >/dev/null 2>&1 || need+=(poppler-utils)
command -v chromium >/dev/null 2>&1 || need+=(chromium fonts-dejavu-core)
if [ ${#need[@]} -eq 0 ]; then
  echo "install-report-deps: pdflatex (booktabs, siunitx, threeparttable), pdftoppm and chromium already present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "install-report-deps: installing ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
