import{u as se,a as re,b as ae,c as ne,d as oe,r as o,i as v,e as ie,j as e,L as _,E as P,P as M,f as le,g as ce,s as J,h as de,k as R,l as ue,m as me,n as p}from"./index-vxX2zdMQ.js";import{M as pe,L as he}from"./metricBuffer-DM8OQCLc.js";import"./uplot-Cf2ZdPUc.js";const je=p(`
  query TrainingJob($id: ID!, $slug: String!) {
    project(slug: $slug) {
      id
      viewerRole
      isArchived
    }
    node(id: $id) {
      __typename
      ... on TrainingJob {
        id
        state
        attempt
        createdAt
        startedAt
        finishedAt
        reason
        cancelRequestedAt
        trainer
        target
        features
        hyperparameters
        validationFraction
        seed
        modelName
        metricKeys
        latestMetrics
        datasetVersion {
          id
          number
          dataset {
            id
            name
          }
        }
        modelVersion {
          id
          number
          metrics
          model {
            id
            name
          }
        }
      }
    }
  }
`),be=p(`
  query JobMetricHistory($id: ID!, $key: String!, $maxPoints: Int!) {
    node(id: $id) {
      __typename
      ... on TrainingJob {
        id
        metrics(key: $key, maxPoints: $maxPoints) {
          step
          value
        }
      }
    }
  }
`),ye=p(`
  query JobMetricKeys($id: ID!) {
    node(id: $id) {
      __typename
      ... on TrainingJob {
        id
        metricKeys
      }
    }
  }
`),xe=p(`
  subscription JobEvents($jobId: ID!, $after: String) {
    jobEvents(jobId: $jobId, after: $after) {
      cursor
      type
      state
      reason
      attempt
      step
      totalSteps
      epoch
      metrics
      examplesPerSecond
      etaSeconds
      modelVersion
    }
  }
`),fe=p(`
  mutation CancelTrainingJob($id: ID!) {
    cancelTrainingJob(id: $id) {
      __typename
      ... on TrainingJobSuccess {
        job {
          id
          state
          cancelRequestedAt
        }
      }
      ... on Error {
        code
        message
      }
    }
  }
`),ge=1e3;function Se(a){if(a.type==="progress")return null;const u=a.type==="state"&&a.state?J(a.state):a.type==="resumed"?`Resumed from step ${a.step??"?"}`:a.type==="checkpoint"?`Checkpoint at step ${a.step??"?"}`:a.type==="model"?"Model version registered":a.type;return{key:a.cursor,label:u,detail:a.reason??null,at:null}}function Re(){const a=se(),u=a.slug??"",y=a.jobId??"",{session:C}=re(),x=ae(),[{data:m,error:k,fetching:L},h]=ne({query:je,variables:{id:y,slug:u}}),[V,D]=oe(fe),[O,j]=o.useState(null),c=o.useMemo(()=>new pe,[y]),[Q,f]=o.useState(0),[g,K]=o.useState(0),[F,T]=o.useState(-1),w=F>=0,[H,U]=o.useState([]),[n,B]=o.useState(null),[G,Y]=o.useState(null),E=o.useRef(new Set),t=m?.node?.__typename==="TrainingJob"?m.node:null,b=t?.id;o.useEffect(()=>{if(!b)return;let r=!0;return(async()=>{const s=await x.query(ye,{id:b},{requestPolicy:"network-only"}).toPromise();if(s.error)throw s.error;const d=s.data?.node,l=d?.__typename==="TrainingJob"?d.metricKeys:[];return Promise.all(l.map(async I=>{const $=await x.query(be,{id:b,key:I,maxPoints:ge},{requestPolicy:"network-only"}).toPromise();if($.error)throw $.error;const N=$.data?.node;return[I,N?.__typename==="TrainingJob"?N.metrics:[]]}))})().then(s=>{r&&(c.clear(),c.replay(Object.fromEntries(s)),f(d=>d+1),T(g))}).catch(s=>{r&&(j(s),T(g))}),()=>{r=!1}},[b,g,x,c]);const z=o.useCallback((r,i)=>{const s=i.jobEvents;if(E.current.has(s.cursor))return i;E.current.add(s.cursor),s.type==="resumed"&&typeof s.step=="number"&&(c.truncateAfter(s.step),f(l=>l+1)),s.type==="progress"&&typeof s.step=="number"&&(c.append(s.step,s.metrics??{})&&f(l=>l+1),B({step:s.step,totalSteps:s.totalSteps??null,epoch:s.epoch??null,examplesPerSecond:s.examplesPerSecond??null,etaSeconds:s.etaSeconds??null}));const d=Se(s);return d&&U(l=>[...l,{...d,at:new Date().toISOString()}]),s.type==="state"&&s.state&&(Y(s.state),v(s.state)&&(h({requestPolicy:"network-only"}),K(l=>l+1))),s.type==="model"&&h({requestPolicy:"network-only"}),i},[c,h]),W=w&&t!==null&&!v(t.state),[q]=ie({query:xe,variables:{jobId:y,after:null},pause:!W},z);if(L&&!m)return e.jsx(_,{what:"the job"});if(!m&&k)return e.jsx(P,{error:k});if(!t)return e.jsxs("section",{children:[e.jsx(M,{slug:u}),e.jsx("h1",{children:"Job not found"}),e.jsx("p",{children:"There is no training job here that you may see."})]});const S=t.state!=="QUEUED"&&t.state!=="RUNNING"?t.state:G??t.state,X=le(m?.project?.viewerRole,C?.isAdmin??!1),Z=ce(X,"DEVELOPER")&&!v(S)&&!t.cancelRequestedAt&&!m?.project?.isArchived;async function ee(){if(!t)return;j(null);const r=await D({id:t.id}),i=r.data?.cancelTrainingJob;r.error?j(r.error):j(me(i)),h({requestPolicy:"network-only"})}const te=[{key:"created",label:"Queued",detail:null,at:t.createdAt},...t.startedAt?[{key:"started",label:"Started",detail:null,at:t.startedAt}]:[],...t.cancelRequestedAt?[{key:"cancel",label:"Cancel requested",detail:null,at:t.cancelRequestedAt}]:[],...t.finishedAt?[{key:"finished",label:J(t.state),detail:t.reason??null,at:t.finishedAt}]:[]],A=t.latestMetrics??{};return e.jsxs("section",{children:[e.jsx(M,{slug:u}),e.jsxs("h1",{children:["Training job: ",t.modelName," ",e.jsx("span",{className:`state state-${S.toLowerCase()}`,children:J(S)})]}),e.jsxs("p",{className:"muted",children:[t.trainer," predicting ",e.jsx("strong",{children:t.target}),t.datasetVersion&&e.jsxs(e.Fragment,{children:[" ","from"," ",e.jsxs(de,{to:`/projects/${u}/datasets/${encodeURIComponent(t.datasetVersion.dataset.name)}`,children:[t.datasetVersion.dataset.name," v",t.datasetVersion.number]})]}),t.attempt>1&&` · attempt ${t.attempt}`]}),t.reason&&e.jsxs("p",{children:["Reason: ",t.reason]}),e.jsx(P,{error:O}),q.error&&e.jsx(P,{error:q.error}),Z&&e.jsx("button",{type:"button",className:"danger",disabled:V.fetching,onClick:()=>void ee(),children:"Cancel job"}),n&&e.jsxs("p",{children:[e.jsx("progress",{"aria-label":"Training progress",max:n.totalSteps??void 0,value:n.step})," Step ",n.step,n.totalSteps!==null&&` of ${n.totalSteps}`,n.epoch!==null&&`, epoch ${n.epoch}`,n.examplesPerSecond!==null&&`, ${R(n.examplesPerSecond)} examples/s`,n.etaSeconds!==null&&`, about ${Math.round(n.etaSeconds)} s left`]}),e.jsx("h2",{children:"Loss and accuracy"}),w?e.jsx(he,{buffer:c,revision:Q}):e.jsx(_,{what:"the metric history"}),Object.keys(A).length>0&&e.jsxs(e.Fragment,{children:[e.jsx("h2",{children:"Latest metrics"}),e.jsx("dl",{className:"facts",children:Object.entries(A).map(([r,i])=>e.jsxs("div",{children:[e.jsx("dt",{children:r}),e.jsx("dd",{children:R(i)})]},r))})]}),t.modelVersion&&e.jsxs("p",{children:["Registered model version ",t.modelVersion.model.name," v",t.modelVersion.number,"."]}),e.jsx("h2",{children:"Timeline"}),e.jsxs("ol",{className:"timeline","aria-label":"State timeline",children:[te.map(r=>e.jsxs("li",{children:[e.jsx("strong",{children:r.label})," ",e.jsx("time",{dateTime:r.at??void 0,children:ue(r.at)}),r.detail&&e.jsxs("span",{className:"muted",children:[" ",r.detail]})]},r.key)),H.map(r=>e.jsxs("li",{children:[e.jsx("strong",{children:r.label})," ",e.jsx("span",{className:"muted",children:"(live)"}),r.detail&&e.jsxs("span",{className:"muted",children:[" ",r.detail]})]},r.key))]}),e.jsx("h2",{children:"Hyperparameters"}),e.jsxs("dl",{className:"facts",children:[Object.entries(t.hyperparameters??{}).map(([r,i])=>e.jsxs("div",{children:[e.jsx("dt",{children:r}),e.jsx("dd",{children:R(i)})]},r)),e.jsxs("div",{children:[e.jsx("dt",{children:"validation fraction"}),e.jsx("dd",{children:t.validationFraction})]}),e.jsxs("div",{children:[e.jsx("dt",{children:"seed"}),e.jsx("dd",{children:t.seed})]})]})]})}export{Re as default};
