{
  description = "yeet: keep directory trees in sync over SSH, one way or both ways, and never lose data";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    flake-utils.url = "github:numtide/flake-utils";
  };

  outputs = { self, nixpkgs, flake-utils }:
    flake-utils.lib.eachDefaultSystem (system:
      let
        pkgs = nixpkgs.legacyPackages.${system};
        py = pkgs.python311;
        runtimeDeps = ps: with ps; [
          typer asyncssh zstandard blake3 msgspec pyroute2 pathspec rich msgpack
        ] ++ pkgs.lib.optionals pkgs.stdenv.isDarwin [ ps.watchdog ];
        yeet = py.pkgs.buildPythonApplication {
          pname = "yeet";
          version = "0.1.0";
          pyproject = true;
          src = ./.;
          build-system = [ py.pkgs.setuptools py.pkgs.wheel ];
          dependencies = runtimeDeps py.pkgs;
          # pyfastcdc is not in nixpkgs: the delta engine falls back to fastcdc there.
          pythonRelaxDeps = true;
          pythonRemoveDeps = [ "pyfastcdc" ];
          makeWrapperArgs = pkgs.lib.optionals pkgs.stdenv.isLinux [
            "--prefix" "LD_LIBRARY_PATH" ":" "${pkgs.libbpf}/lib"
          ];
          doCheck = false;
        };
      in {
        packages.default = yeet;
        apps.default = { type = "app"; program = "${yeet}/bin/yeet"; };
        devShells.default = pkgs.mkShell {
          packages = [
            (py.withPackages (ps: runtimeDeps ps ++ (with ps; [
              pytest pytest-xdist pytest-timeout hypothesis mypy
            ])))
            pkgs.ruff pkgs.rsync pkgs.unison pkgs.openssh pkgs.git pkgs.fio
          ] ++ pkgs.lib.optionals pkgs.stdenv.isLinux [
            pkgs.libbpf pkgs.clang pkgs.llvm pkgs.bpftools pkgs.iproute2
          ];
          shellHook = pkgs.lib.optionalString pkgs.stdenv.isLinux ''
            export LD_LIBRARY_PATH=${pkgs.libbpf}/lib''${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
          '';
        };
      });
}
