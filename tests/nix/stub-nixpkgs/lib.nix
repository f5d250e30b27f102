# The part of nixpkgs' lib that this repository's Nix files call, reduced to what a test can
# look at: options and types are records (no module system: the tests resolve mkIf/mkMerge
# themselves, see ../modules.nix), licenses and platforms are names.
let
  option = kind: attrs: { _type = kind; } // attrs;
in
rec {
  # lib
  optionals = cond: xs: if cond then xs else [ ];
  optionalAttrs = cond: as: if cond then as else { };
  mapAttrs = builtins.mapAttrs;
  getExe =
    drv:
    if drv ? meta.mainProgram then
      "${drv}/bin/${drv.meta.mainProgram}"
    else
      throw "stub lib.getExe: ${drv.name or "a package"} has no meta.mainProgram";
  licenses.mit = {
    spdxId = "MIT";
  };
  platforms = {
    linux = [
      "x86_64-linux"
      "aarch64-linux"
    ];
    darwin = [
      "x86_64-darwin"
      "aarch64-darwin"
    ];
  };

  # modules, as records
  mkIf = condition: content: {
    _type = "if";
    inherit condition content;
  };
  mkMerge = contents: {
    _type = "merge";
    inherit contents;
  };
  mkOption = attrs: option "option" attrs;
  mkEnableOption = name: option "option" {
    type = types.bool;
    default = false;
    description = "Whether to enable ${name}.";
  };
  literalExpression = text: {
    _type = "literalExpression";
    inherit text;
  };
  types = {
    bool = option "type" { name = "bool"; };
    str = option "type" { name = "str"; };
    port = option "type" { name = "port"; };
    package = option "type" { name = "package"; };
    enum = values: option "type" {
      name = "enum";
      inherit values;
    };
    nullOr = elem: option "type" {
      name = "nullOr";
      inherit elem;
    };
    listOf = elem: option "type" {
      name = "listOf";
      inherit elem;
    };
    attrsOf = elem: option "type" {
      name = "attrsOf";
      inherit elem;
    };
    submodule = module: option "type" {
      name = "submodule";
      inherit (module) options;
    };
  };
}
