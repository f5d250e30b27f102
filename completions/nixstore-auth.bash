_nixstore__auth() {
    local i cur prev opts cmd
    COMPREPLY=()
    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
        cur="$2"
    else
        cur="${COMP_WORDS[COMP_CWORD]}"
    fi
    prev="$3"
    cmd=""
    opts=""

    for i in "${COMP_WORDS[@]:0:COMP_CWORD}"
    do
        case "${cmd},${i}" in
            ",$1")
                cmd="nixstore__auth"
                ;;
            nixstore__auth,aws)
                cmd="nixstore__auth__subcmd__aws"
                ;;
            nixstore__auth,completions)
                cmd="nixstore__auth__subcmd__completions"
                ;;
            nixstore__auth,doctor)
                cmd="nixstore__auth__subcmd__doctor"
                ;;
            nixstore__auth,env)
                cmd="nixstore__auth__subcmd__env"
                ;;
            nixstore__auth,exec)
                cmd="nixstore__auth__subcmd__exec"
                ;;
            nixstore__auth,help)
                cmd="nixstore__auth__subcmd__help"
                ;;
            nixstore__auth,list)
                cmd="nixstore__auth__subcmd__list"
                ;;
            nixstore__auth,login)
                cmd="nixstore__auth__subcmd__login"
                ;;
            nixstore__auth,logout)
                cmd="nixstore__auth__subcmd__logout"
                ;;
            nixstore__auth,ls)
                cmd="nixstore__auth__subcmd__list"
                ;;
            nixstore__auth,proxy)
                cmd="nixstore__auth__subcmd__proxy"
                ;;
            nixstore__auth,push)
                cmd="nixstore__auth__subcmd__push"
                ;;
            nixstore__auth,remove)
                cmd="nixstore__auth__subcmd__remove"
                ;;
            nixstore__auth,rm)
                cmd="nixstore__auth__subcmd__remove"
                ;;
            nixstore__auth,secret)
                cmd="nixstore__auth__subcmd__secret"
                ;;
            nixstore__auth,service)
                cmd="nixstore__auth__subcmd__service"
                ;;
            nixstore__auth,shell-init)
                cmd="nixstore__auth__subcmd__shell__subcmd__init"
                ;;
            nixstore__auth,use)
                cmd="nixstore__auth__subcmd__use"
                ;;
            nixstore__auth,watch-store)
                cmd="nixstore__auth__subcmd__watch__subcmd__store"
                ;;
            nixstore__auth__subcmd__aws,add-key)
                cmd="nixstore__auth__subcmd__aws__subcmd__add__subcmd__key"
                ;;
            nixstore__auth__subcmd__aws,help)
                cmd="nixstore__auth__subcmd__aws__subcmd__help"
                ;;
            nixstore__auth__subcmd__aws,remove-key)
                cmd="nixstore__auth__subcmd__aws__subcmd__remove__subcmd__key"
                ;;
            nixstore__auth__subcmd__aws__subcmd__help,add-key)
                cmd="nixstore__auth__subcmd__aws__subcmd__help__subcmd__add__subcmd__key"
                ;;
            nixstore__auth__subcmd__aws__subcmd__help,help)
                cmd="nixstore__auth__subcmd__aws__subcmd__help__subcmd__help"
                ;;
            nixstore__auth__subcmd__aws__subcmd__help,remove-key)
                cmd="nixstore__auth__subcmd__aws__subcmd__help__subcmd__remove__subcmd__key"
                ;;
            nixstore__auth__subcmd__help,aws)
                cmd="nixstore__auth__subcmd__help__subcmd__aws"
                ;;
            nixstore__auth__subcmd__help,completions)
                cmd="nixstore__auth__subcmd__help__subcmd__completions"
                ;;
            nixstore__auth__subcmd__help,doctor)
                cmd="nixstore__auth__subcmd__help__subcmd__doctor"
                ;;
            nixstore__auth__subcmd__help,env)
                cmd="nixstore__auth__subcmd__help__subcmd__env"
                ;;
            nixstore__auth__subcmd__help,exec)
                cmd="nixstore__auth__subcmd__help__subcmd__exec"
                ;;
            nixstore__auth__subcmd__help,help)
                cmd="nixstore__auth__subcmd__help__subcmd__help"
                ;;
            nixstore__auth__subcmd__help,list)
                cmd="nixstore__auth__subcmd__help__subcmd__list"
                ;;
            nixstore__auth__subcmd__help,login)
                cmd="nixstore__auth__subcmd__help__subcmd__login"
                ;;
            nixstore__auth__subcmd__help,logout)
                cmd="nixstore__auth__subcmd__help__subcmd__logout"
                ;;
            nixstore__auth__subcmd__help,proxy)
                cmd="nixstore__auth__subcmd__help__subcmd__proxy"
                ;;
            nixstore__auth__subcmd__help,push)
                cmd="nixstore__auth__subcmd__help__subcmd__push"
                ;;
            nixstore__auth__subcmd__help,remove)
                cmd="nixstore__auth__subcmd__help__subcmd__remove"
                ;;
            nixstore__auth__subcmd__help,secret)
                cmd="nixstore__auth__subcmd__help__subcmd__secret"
                ;;
            nixstore__auth__subcmd__help,service)
                cmd="nixstore__auth__subcmd__help__subcmd__service"
                ;;
            nixstore__auth__subcmd__help,shell-init)
                cmd="nixstore__auth__subcmd__help__subcmd__shell__subcmd__init"
                ;;
            nixstore__auth__subcmd__help,use)
                cmd="nixstore__auth__subcmd__help__subcmd__use"
                ;;
            nixstore__auth__subcmd__help,watch-store)
                cmd="nixstore__auth__subcmd__help__subcmd__watch__subcmd__store"
                ;;
            nixstore__auth__subcmd__help__subcmd__aws,add-key)
                cmd="nixstore__auth__subcmd__help__subcmd__aws__subcmd__add__subcmd__key"
                ;;
            nixstore__auth__subcmd__help__subcmd__aws,remove-key)
                cmd="nixstore__auth__subcmd__help__subcmd__aws__subcmd__remove__subcmd__key"
                ;;
            nixstore__auth__subcmd__help__subcmd__proxy,lease)
                cmd="nixstore__auth__subcmd__help__subcmd__proxy__subcmd__lease"
                ;;
            nixstore__auth__subcmd__help__subcmd__proxy,rotate-secret)
                cmd="nixstore__auth__subcmd__help__subcmd__proxy__subcmd__rotate__subcmd__secret"
                ;;
            nixstore__auth__subcmd__help__subcmd__proxy,serve)
                cmd="nixstore__auth__subcmd__help__subcmd__proxy__subcmd__serve"
                ;;
            nixstore__auth__subcmd__help__subcmd__proxy,start)
                cmd="nixstore__auth__subcmd__help__subcmd__proxy__subcmd__start"
                ;;
            nixstore__auth__subcmd__help__subcmd__proxy,status)
                cmd="nixstore__auth__subcmd__help__subcmd__proxy__subcmd__status"
                ;;
            nixstore__auth__subcmd__help__subcmd__proxy,stop)
                cmd="nixstore__auth__subcmd__help__subcmd__proxy__subcmd__stop"
                ;;
            nixstore__auth__subcmd__help__subcmd__proxy,watch-urls)
                cmd="nixstore__auth__subcmd__help__subcmd__proxy__subcmd__watch__subcmd__urls"
                ;;
            nixstore__auth__subcmd__help__subcmd__secret,delete)
                cmd="nixstore__auth__subcmd__help__subcmd__secret__subcmd__delete"
                ;;
            nixstore__auth__subcmd__help__subcmd__secret,set)
                cmd="nixstore__auth__subcmd__help__subcmd__secret__subcmd__set"
                ;;
            nixstore__auth__subcmd__help__subcmd__secret,status)
                cmd="nixstore__auth__subcmd__help__subcmd__secret__subcmd__status"
                ;;
            nixstore__auth__subcmd__help__subcmd__service,install)
                cmd="nixstore__auth__subcmd__help__subcmd__service__subcmd__install"
                ;;
            nixstore__auth__subcmd__help__subcmd__service,status)
                cmd="nixstore__auth__subcmd__help__subcmd__service__subcmd__status"
                ;;
            nixstore__auth__subcmd__help__subcmd__service,uninstall)
                cmd="nixstore__auth__subcmd__help__subcmd__service__subcmd__uninstall"
                ;;
            nixstore__auth__subcmd__proxy,help)
                cmd="nixstore__auth__subcmd__proxy__subcmd__help"
                ;;
            nixstore__auth__subcmd__proxy,lease)
                cmd="nixstore__auth__subcmd__proxy__subcmd__lease"
                ;;
            nixstore__auth__subcmd__proxy,rotate-secret)
                cmd="nixstore__auth__subcmd__proxy__subcmd__rotate__subcmd__secret"
                ;;
            nixstore__auth__subcmd__proxy,serve)
                cmd="nixstore__auth__subcmd__proxy__subcmd__serve"
                ;;
            nixstore__auth__subcmd__proxy,start)
                cmd="nixstore__auth__subcmd__proxy__subcmd__start"
                ;;
            nixstore__auth__subcmd__proxy,status)
                cmd="nixstore__auth__subcmd__proxy__subcmd__status"
                ;;
            nixstore__auth__subcmd__proxy,stop)
                cmd="nixstore__auth__subcmd__proxy__subcmd__stop"
                ;;
            nixstore__auth__subcmd__proxy,watch-urls)
                cmd="nixstore__auth__subcmd__proxy__subcmd__watch__subcmd__urls"
                ;;
            nixstore__auth__subcmd__proxy__subcmd__help,help)
                cmd="nixstore__auth__subcmd__proxy__subcmd__help__subcmd__help"
                ;;
            nixstore__auth__subcmd__proxy__subcmd__help,lease)
                cmd="nixstore__auth__subcmd__proxy__subcmd__help__subcmd__lease"
                ;;
            nixstore__auth__subcmd__proxy__subcmd__help,rotate-secret)
                cmd="nixstore__auth__subcmd__proxy__subcmd__help__subcmd__rotate__subcmd__secret"
                ;;
            nixstore__auth__subcmd__proxy__subcmd__help,serve)
                cmd="nixstore__auth__subcmd__proxy__subcmd__help__subcmd__serve"
                ;;
            nixstore__auth__subcmd__proxy__subcmd__help,start)
                cmd="nixstore__auth__subcmd__proxy__subcmd__help__subcmd__start"
                ;;
            nixstore__auth__subcmd__proxy__subcmd__help,status)
                cmd="nixstore__auth__subcmd__proxy__subcmd__help__subcmd__status"
                ;;
            nixstore__auth__subcmd__proxy__subcmd__help,stop)
                cmd="nixstore__auth__subcmd__proxy__subcmd__help__subcmd__stop"
                ;;
            nixstore__auth__subcmd__proxy__subcmd__help,watch-urls)
                cmd="nixstore__auth__subcmd__proxy__subcmd__help__subcmd__watch__subcmd__urls"
                ;;
            nixstore__auth__subcmd__secret,delete)
                cmd="nixstore__auth__subcmd__secret__subcmd__delete"
                ;;
            nixstore__auth__subcmd__secret,help)
                cmd="nixstore__auth__subcmd__secret__subcmd__help"
                ;;
            nixstore__auth__subcmd__secret,set)
                cmd="nixstore__auth__subcmd__secret__subcmd__set"
                ;;
            nixstore__auth__subcmd__secret,status)
                cmd="nixstore__auth__subcmd__secret__subcmd__status"
                ;;
            nixstore__auth__subcmd__secret__subcmd__help,delete)
                cmd="nixstore__auth__subcmd__secret__subcmd__help__subcmd__delete"
                ;;
            nixstore__auth__subcmd__secret__subcmd__help,help)
                cmd="nixstore__auth__subcmd__secret__subcmd__help__subcmd__help"
                ;;
            nixstore__auth__subcmd__secret__subcmd__help,set)
                cmd="nixstore__auth__subcmd__secret__subcmd__help__subcmd__set"
                ;;
            nixstore__auth__subcmd__secret__subcmd__help,status)
                cmd="nixstore__auth__subcmd__secret__subcmd__help__subcmd__status"
                ;;
            nixstore__auth__subcmd__service,help)
                cmd="nixstore__auth__subcmd__service__subcmd__help"
                ;;
            nixstore__auth__subcmd__service,install)
                cmd="nixstore__auth__subcmd__service__subcmd__install"
                ;;
            nixstore__auth__subcmd__service,status)
                cmd="nixstore__auth__subcmd__service__subcmd__status"
                ;;
            nixstore__auth__subcmd__service,uninstall)
                cmd="nixstore__auth__subcmd__service__subcmd__uninstall"
                ;;
            nixstore__auth__subcmd__service__subcmd__help,help)
                cmd="nixstore__auth__subcmd__service__subcmd__help__subcmd__help"
                ;;
            nixstore__auth__subcmd__service__subcmd__help,install)
                cmd="nixstore__auth__subcmd__service__subcmd__help__subcmd__install"
                ;;
            nixstore__auth__subcmd__service__subcmd__help,status)
                cmd="nixstore__auth__subcmd__service__subcmd__help__subcmd__status"
                ;;
            nixstore__auth__subcmd__service__subcmd__help,uninstall)
                cmd="nixstore__auth__subcmd__service__subcmd__help__subcmd__uninstall"
                ;;
            *)
                ;;
        esac
    done

    case "${cmd}" in
        nixstore__auth)
            opts="-v -q -h -V --verbose --quiet --color --help --version use remove rm list ls exec env login logout push watch-store secret aws doctor shell-init completions proxy service help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 1 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__aws)
            opts="-v -q -h --verbose --quiet --color --help add-key remove-key help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__aws__subcmd__add__subcmd__key)
            opts="-v -q -h --profile --verbose --quiet --color --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --profile)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__aws__subcmd__help)
            opts="add-key remove-key help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__aws__subcmd__help__subcmd__add__subcmd__key)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__aws__subcmd__help__subcmd__help)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__aws__subcmd__help__subcmd__remove__subcmd__key)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__aws__subcmd__remove__subcmd__key)
            opts="-v -q -h --profile --verbose --quiet --color --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --profile)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__completions)
            opts="-v -q -h --verbose --quiet --color --help bash elvish fish powershell zsh"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__doctor)
            opts="-v -q -h --json --verbose --quiet --color --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__env)
            opts="-v -q -h --profile --mfa-code --format --verbose --quiet --color --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --profile)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --mfa-code)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --format)
                    COMPREPLY=($(compgen -W "sh fish json" -- "${cur}"))
                    return 0
                    ;;
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__exec)
            opts="-v -q -h --cache --profile --mfa-code --via --builder-env --push --push-strict --no-sign --verbose --quiet --color --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --cache)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --profile)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --mfa-code)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --via)
                    COMPREPLY=($(compgen -W "auto proxy env" -- "${cur}"))
                    return 0
                    ;;
                --push)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help)
            opts="use remove list exec env login logout push watch-store secret aws doctor shell-init completions proxy service help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__aws)
            opts="add-key remove-key"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__aws__subcmd__add__subcmd__key)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__aws__subcmd__remove__subcmd__key)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__completions)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__doctor)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__env)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__exec)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__help)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__list)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__login)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__logout)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__proxy)
            opts="status rotate-secret stop start serve lease watch-urls"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__proxy__subcmd__lease)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__proxy__subcmd__rotate__subcmd__secret)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__proxy__subcmd__serve)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__proxy__subcmd__start)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__proxy__subcmd__status)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__proxy__subcmd__stop)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__proxy__subcmd__watch__subcmd__urls)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__push)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__remove)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__secret)
            opts="set status delete"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__secret__subcmd__delete)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__secret__subcmd__set)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__secret__subcmd__status)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__service)
            opts="install uninstall status"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__service__subcmd__install)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__service__subcmd__status)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__service__subcmd__uninstall)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__shell__subcmd__init)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__use)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__help__subcmd__watch__subcmd__store)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__list)
            opts="-v -q -h --format --json --verbose --quiet --color --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --format)
                    COMPREPLY=($(compgen -W "text json" -- "${cur}"))
                    return 0
                    ;;
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__login)
            opts="-v -q -h --profile --mfa-code --duration --mfa-session-duration --verbose --quiet --color --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --profile)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --mfa-code)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --duration)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --mfa-session-duration)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__logout)
            opts="-v -q -h --profile --all --verbose --quiet --color --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --profile)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__proxy)
            opts="-v -q -h --verbose --quiet --color --help status rotate-secret stop start serve lease watch-urls help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__proxy__subcmd__help)
            opts="status rotate-secret stop start serve lease watch-urls help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__proxy__subcmd__help__subcmd__help)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__proxy__subcmd__help__subcmd__lease)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__proxy__subcmd__help__subcmd__rotate__subcmd__secret)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__proxy__subcmd__help__subcmd__serve)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__proxy__subcmd__help__subcmd__start)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__proxy__subcmd__help__subcmd__status)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__proxy__subcmd__help__subcmd__stop)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__proxy__subcmd__help__subcmd__watch__subcmd__urls)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__proxy__subcmd__lease)
            opts="-v -q -h --verbose --quiet --color --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__proxy__subcmd__rotate__subcmd__secret)
            opts="-v -q -h --verbose --quiet --color --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__proxy__subcmd__serve)
            opts="-v -q -h --persistent --verbose --quiet --color --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__proxy__subcmd__start)
            opts="-v -q -h --persistent --verbose --quiet --color --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__proxy__subcmd__status)
            opts="-v -q -h --verbose --quiet --color --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__proxy__subcmd__stop)
            opts="-v -q -h --verbose --quiet --color --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__proxy__subcmd__watch__subcmd__urls)
            opts="-v -q -h --verbose --quiet --color --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__push)
            opts="-j -v -q -h --secret-key --no-sign --profile --mfa-code --jobs --verbose --quiet --color --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --secret-key)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --profile)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --mfa-code)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --jobs)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -j)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__remove)
            opts="-y -v -q -h --mode --nix-conf --netrc --dry-run --yes --verbose --quiet --color --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --mode)
                    COMPREPLY=($(compgen -W "auto user system print" -- "${cur}"))
                    return 0
                    ;;
                --nix-conf)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --netrc)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__secret)
            opts="-v -q -h --verbose --quiet --color --help set status delete help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__secret__subcmd__delete)
            opts="-v -q -h --signing-key --verbose --quiet --color --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__secret__subcmd__help)
            opts="set status delete help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__secret__subcmd__help__subcmd__delete)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__secret__subcmd__help__subcmd__help)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__secret__subcmd__help__subcmd__set)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__secret__subcmd__help__subcmd__status)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__secret__subcmd__set)
            opts="-v -q -h --token-stdin --signing-key-stdin --azure-key-stdin --sas-stdin --verbose --quiet --color --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__secret__subcmd__status)
            opts="-v -q -h --json --verbose --quiet --color --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__service)
            opts="-v -q -h --verbose --quiet --color --help install uninstall status help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__service__subcmd__help)
            opts="install uninstall status help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__service__subcmd__help__subcmd__help)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__service__subcmd__help__subcmd__install)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__service__subcmd__help__subcmd__status)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__service__subcmd__help__subcmd__uninstall)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 4 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__service__subcmd__install)
            opts="-v -q -h --dry-run --verbose --quiet --color --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__service__subcmd__status)
            opts="-v -q -h --format --verbose --quiet --color --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --format)
                    COMPREPLY=($(compgen -W "text json" -- "${cur}"))
                    return 0
                    ;;
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__service__subcmd__uninstall)
            opts="-v -q -h --dry-run --verbose --quiet --color --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__shell__subcmd__init)
            opts="-v -q -h --commands --verbose --quiet --color --help bash zsh fish"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --commands)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__use)
            opts="-y -v -q -h --name --public-key --token-stdin --token-env --no-token --login --mode --nix-conf --netrc --dry-run --yes --format --secret-store --route --auth --token-command --ca-file --restart-daemon --secret-key --verbose --quiet --color --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --name)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --public-key)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --token-env)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --login)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --mode)
                    COMPREPLY=($(compgen -W "auto user system print" -- "${cur}"))
                    return 0
                    ;;
                --nix-conf)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --netrc)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --format)
                    COMPREPLY=($(compgen -W "nix-conf nixos home-manager" -- "${cur}"))
                    return 0
                    ;;
                --secret-store)
                    COMPREPLY=($(compgen -W "netrc keyring" -- "${cur}"))
                    return 0
                    ;;
                --route)
                    COMPREPLY=($(compgen -W "auto netrc proxy" -- "${cur}"))
                    return 0
                    ;;
                --auth)
                    COMPREPLY=($(compgen -W "basic bearer" -- "${cur}"))
                    return 0
                    ;;
                --token-command)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --ca-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --secret-key)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        nixstore__subcmd__auth__subcmd__watch__subcmd__store)
            opts="-j -v -q -h --secret-key --no-sign --profile --mfa-code --jobs --verbose --quiet --color --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --secret-key)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --profile)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --mfa-code)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --jobs)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -j)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --color)
                    COMPREPLY=($(compgen -W "auto always never" -- "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
    esac
}

if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _nixstore__auth -o nosort -o bashdefault -o default nixstore-auth
else
    complete -F _nixstore__auth -o bashdefault -o default nixstore-auth
fi
