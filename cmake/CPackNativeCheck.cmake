# Read by cpack: refuse to package a library compiled with -march=native, which would fault with
# illegal instructions on an older processor. CPACK_AD_THIS_MACHINE_ONLY=ON (cpack -D) packages it
# anyway, for a package that never leaves this machine (the package tests).
if(CPACK_AD_NATIVE AND NOT CPACK_AD_THIS_MACHINE_ONLY)
  message(FATAL_ERROR "this build tree compiles the library with -march=native (AD_NATIVE=ON): "
                      "configure with -DAD_NATIVE=OFF to package it, as scripts/package does")
endif()
